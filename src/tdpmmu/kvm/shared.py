"""The visible operations of the KVM model: what other threads can see without a lock.

Three kinds of KVM state are touched outside ``mmu_lock`` and so must be
scheduling points:

* SPTEs: the kernel stores them with ``WRITE_ONCE`` under ``mmu_lock``, and a
  vCPU's hardware page walk reads them with no lock at all.  The engine sees
  an SPTE as a *word* of its root's paging structure (:class:`SpteWord`):
  the position an entry holds in the tree, named by its level and the gfns
  it covers (``gfn >> (PT64_LEVEL_BITS * (level - 1))``), not by the page
  that holds it.  A store writes its word; a hardware walk of a gfn reads
  the words of that gfn's path at every level of the root, which do not
  depend on the state (a walk that stops early reads fewer: the rest is an
  over-approximation), so the walk's accesses stay exact while other threads
  change the tree.  A walk is atomic with respect to stores (a remote TLB
  flush waits for vCPUs to leave guest mode, so no walk straddles an
  unlink-flush-free sequence).  An unlinked page keeps its position, so its
  words are those of the page that replaced it: a conservative overlap.  A
  check that reads a whole root declares every word (:func:`root_words`);
  freeing a page table writes the words of its entries.  A root whose pages
  do not map guest-physical addresses (a shadow root of a nested guest,
  ``role.direct == 0``) is one word: the tree itself.
  Not modelled: ``get_mmio_spte``'s software walk (``kvm_tdp_mmu_get_walk``)
  runs in host mode with no lock at v5.10/v5.11 (RCU protection came in
  5.12), so the flush does not wait for it and a page table could be freed
  under it; the model walks atomically there too, so that window is not
  explored.
* vCPU request bits and TLBs, set and flushed by other threads.  A TLB is an
  object (its contents as a whole: a fill writes it, a lookup reads it, a
  flush updates it, see :func:`tlb_flush`) with a word per gfn
  (:class:`TlbWord`) and a flush word: a fill of a gfn also writes the gfn's
  word, a flush also updates the flush word, so a check that reads the
  entries of some gfns only (:func:`tlb_range_reads`) reads their words and
  the flush word and is ordered against fills of those gfns and flushes, not
  against fills of others.  A check reading every entry reads the TLB.
* words read locklessly by the fault path (memslots, the MMU-notifier
  sequence, the host page tables), which are engine ``Var``s.
"""

from __future__ import annotations

import sys
from typing import Any

from ..engine import READ, WRITE, mark, note_read, update_mode, visible
from .spte import PT64_ENT_PER_PAGE, PT64_LEVEL_BITS

# "word" (the default) or "root": every SPTE of a tree is one object, as the
# model had it before SPTE words; kept to test the finer relation against it.
GRANULARITY = ["word"]
# "gfn" (the default) or "whole": a TLB is one object for every check, as the
# model had it before TLB words; kept to test the finer relation against it.
TLB_GRANULARITY = ["gfn"]


def set_spte_granularity(granularity: str) -> str:
    """Choose the access objects of SPTEs ("word" or "root"); returns the old choice."""
    if granularity not in ("word", "root"):
        raise ValueError(f"unknown SPTE granularity {granularity!r}")
    old, GRANULARITY[0] = GRANULARITY[0], granularity
    return old


def set_tlb_granularity(granularity: str) -> str:
    """Choose the access objects of TLBs ("gfn" or "whole"); returns the old choice."""
    if granularity not in ("gfn", "whole"):
        raise ValueError(f"unknown TLB granularity {granularity!r}")
    old, TLB_GRANULARITY[0] = TLB_GRANULARITY[0], granularity
    return old


class TlbWord:
    """Model only: the entry of one gfn in a vCPU's TLB, or (``gfn`` None) the
    TLB's flush word (see the module docstring)."""

    __slots__ = ("tlb", "gfn", "version", "__weakref__")

    def __init__(self, tlb: Any, gfn: int | None) -> None:
        self.tlb = tlb
        self.gfn = gfn
        self.version = 0

    @property
    def name(self) -> str:
        return f"{self.tlb.name}[{'flush' if self.gfn is None else hex(self.gfn)}]"


def _tlb_word(tlb: Any, gfn: int | None) -> TlbWord:
    words = tlb.__dict__.get("words")
    if words is None:
        words = tlb.__dict__["words"] = {}
    w = words.get(gfn)
    if w is None:
        w = words[gfn] = TlbWord(tlb, gfn)
    return w


def tlb_fill_accesses(tlb: Any, gfn: int) -> tuple:
    """What filling ``tlb``'s entry for ``gfn`` writes."""
    if TLB_GRANULARITY[0] == "whole":
        return ((tlb, WRITE),)
    return ((tlb, WRITE), (_tlb_word(tlb, gfn), WRITE))


def tlb_range_reads(tlb: Any, gfns: Any) -> tuple:
    """READ accesses of a check that reads ``tlb``'s entries of ``gfns`` only."""
    if TLB_GRANULARITY[0] == "whole":
        return ((tlb, READ),)
    return (((_tlb_word(tlb, None), READ),)
            + tuple((_tlb_word(tlb, g), READ) for g in gfns))


# "range" (the default) or "root": a check of what some gfns map reads every
# word of each root, as the model had it before; kept to test against.
CHECK_FOOTPRINT = ["range"]


def set_check_footprint(footprint: str) -> str:
    """Choose what a check of some gfns declares ("range" or "root"); returns the old."""
    if footprint not in ("range", "root"):
        raise ValueError(f"unknown check footprint {footprint!r}")
    old, CHECK_FOOTPRINT[0] = CHECK_FOOTPRINT[0], footprint
    return old


def check_reads(trees: Any, gfns: Any) -> tuple:
    """READ accesses of a check that reads what each tree maps at ``gfns`` only:
    the words of their walks (what decides a gfn's translation: a huge leaf or
    a missing table on the way is a word of the walk too), each once; every
    word of each tree under ``set_check_footprint("root")``."""
    trees = list(trees)
    if CHECK_FOOTPRINT[0] == "root":
        return root_reads(trees)
    seen: dict[int, Any] = {}
    for t in trees:
        for g in gfns:
            for w in walk_words(t, g):
                seen.setdefault(id(w), w)
    return tuple((w, READ) for w in seen.values())


class SpteWord:
    """Model only: one SPTE position of a paging structure (see the module
    docstring), the object the engine's accesses of that SPTE name."""

    __slots__ = ("tree", "level", "idx", "version", "__weakref__")

    def __init__(self, tree: Any, level: int, idx: int) -> None:
        self.tree = tree
        self.level = level
        self.idx = idx
        self.version = 0  # bumped by stores (spin-wait detection)

    @property
    def name(self) -> str:
        return f"{self.tree.name} L{self.level}[{self.idx:#x}]"


def _words(tree: Any) -> dict:
    words = object.__getattribute__(tree, "spte_words")
    if words is None:
        words = {}
        object.__setattr__(tree, "spte_words", words)
    return words


def _word(tree: Any, level: int, idx: int) -> SpteWord:
    words = _words(tree)
    w = words.get((level, idx))
    if w is None:
        w = words[(level, idx)] = SpteWord(tree, level, idx)
    return w


def _direct(sp: Any) -> bool:
    """Does the page map guest-physical addresses (and are SPTEs words)?"""
    if GRANULARITY[0] == "root":
        return False
    role = object.__getattribute__(sp, "role")
    return role is None or role.direct


def _entry_level(sp: Any) -> int:
    """The level of the SPTEs page ``sp`` holds, the level the hardware walk
    (:func:`walk_words`) keys its words by.  A legacy page's and a TDP MMU
    root's ``role.level`` is that level; a TDP MMU page table below the root
    has, as in 5.12's ``kvm_tdp_mmu_map`` (``alloc_tdp_mmu_page(vcpu,
    iter.gfn, iter.level)``, which the model keeps in every version), the
    level of the SPTE it hangs from, one above its entries'."""
    level = object.__getattribute__(sp, "role").level
    if object.__getattribute__(sp, "tdp_mmu_page") and object.__getattribute__(sp, "root") \
            is not sp:
        return level - 1
    return level


def _first_idx(sp: Any) -> tuple[int, int]:
    """The level of page ``sp``'s entries and the word index of its entry 0
    (read without KASAN checks: a page is also asked while it is being freed)."""
    level = _entry_level(sp)
    base = object.__getattribute__(sp, "gfn") >> (PT64_LEVEL_BITS * (level - 1))
    return level, base & ~(PT64_ENT_PER_PAGE - 1)


def spte_word(sp: Any, index: int) -> Any:
    """The access object of entry ``index`` of page ``sp``."""
    tree = sp.root
    if not _direct(sp):
        return tree
    level, first = _first_idx(sp)
    return _word(tree, level, first + index)


def page_words(sp: Any) -> tuple:
    """The words of all of a page's entries (what freeing the page writes)."""
    tree = object.__getattribute__(sp, "root")
    if tree is None:
        return ()
    if not _direct(sp):
        return (tree,)
    level, first = _first_idx(sp)
    return tuple(_word(tree, level, first + i) for i in range(PT64_ENT_PER_PAGE))


def _tree_root(tree: Any) -> Any:
    """The root page of a tree (the TDP MMU's tree is its root page)."""
    sp = getattr(tree, "sp", None)
    return tree if sp is None else sp


def walk_words(tree: Any, gfn: int) -> tuple:
    """The words a walk of ``gfn`` from the tree's root reads, root level first."""
    root = _tree_root(tree)
    if not _direct(root):
        return (tree,)
    cache = _words(tree)
    key = ("walk", gfn)
    path = cache.get(key)
    if path is None:
        top = object.__getattribute__(root, "role").level
        path = cache[key] = tuple(_word(tree, level, gfn >> (PT64_LEVEL_BITS * (level - 1)))
                                  for level in range(top, 0, -1))
    return path


def root_words(tree: Any) -> tuple:
    """Every word of a tree: what a check that reads the whole root declares."""
    root = _tree_root(tree)
    if not _direct(root):
        return (tree,)
    cache = _words(tree)
    words = cache.get("all")
    if words is None:
        top = object.__getattribute__(root, "role").level
        words = cache["all"] = tuple(_word(tree, level, idx) for level in range(top, 0, -1)
                                     for idx in range(PT64_ENT_PER_PAGE ** (top - level + 1)))
    return words


def root_reads(trees: Any) -> tuple:
    """READ accesses of every word of each tree."""
    return tuple((w, READ) for t in trees for w in root_words(t))


def write_spte(sp: Any, index: int, new_spte: int) -> None:
    """``WRITE_ONCE(*sptep, new_spte)``."""
    w = spte_word(sp, index)
    visible(f"WRITE_ONCE(spte {sp.name}[{index}])", ((w, WRITE),))
    sp.spt[index] = new_spte
    w.version += 1


def read_spte(sp: Any, index: int) -> int:
    """``READ_ONCE(*sptep)`` by a walker that does not exclude writers (5.12+)."""
    w = spte_word(sp, index)
    visible(f"READ_ONCE(spte {sp.name}[{index}])", ((w, READ),))
    note_read(w)
    return sp.spt[index]


def cmpxchg_spte(sp: Any, index: int, old_spte: int, new_spte: int) -> int:
    """``cmpxchg64(sptep, old_spte, new_spte)``: one atomic step; returns the old value."""
    w = spte_word(sp, index)
    visible(f"cmpxchg64(spte {sp.name}[{index}])", ((w, WRITE),))
    note_read(w)
    cur = sp.spt[index]
    if cur == old_spte:
        sp.spt[index] = new_spte
        w.version += 1
    return cur


def fetch_and_spte(sp: Any, index: int, mask: int) -> int:
    """``atomic64_fetch_and(mask, sptep)`` (6.4's ``tdp_mmu_clear_spte_bits_atomic``
    clears bits with a LOCK AND): one atomic step; returns the old value."""
    w = spte_word(sp, index)
    visible(f"atomic64_fetch_and(spte {sp.name}[{index}])", ((w, WRITE),))
    note_read(w)
    cur = sp.spt[index]
    if cur & ~mask != cur:
        sp.spt[index] = cur & mask
        w.version += 1
    return cur


def xchg_spte(sp: Any, index: int, new_spte: int) -> int:
    """``xchg(sptep, new_spte)``: one atomic step; returns the old value."""
    w = spte_word(sp, index)
    visible(f"xchg(spte {sp.name}[{index}])", ((w, WRITE),))
    note_read(w)
    cur = sp.spt[index]
    sp.spt[index] = new_spte
    w.version += 1
    return cur


def hardware_walk_point(tree: Any, gfn: int, tlb: Any, requests: Any,
                        write_acc: tuple = (), assist_level: int | None = None) -> None:
    """The scheduling point of one hardware page walk of ``gfn`` in the paging
    structure ``tree`` that may fill ``tlb`` (and complete a guest write:
    ``write_acc``, see :func:`guest_write_accesses`).  With ``assist_level``
    the walk may set the Accessed and Dirty bits of the leaf at that level (the
    CPU's A/D assist): that word is declared written."""
    path = walk_words(tree, gfn)
    if assist_level is None:
        acc = tuple((w, READ) for w in path)
        label = f"EPT walk {tree.name}"
    else:
        # Root level first; one word for the whole tree (legacy roots) is written.
        top = len(path)
        acc = tuple((w, WRITE if top == 1 or top - i == assist_level else READ)
                    for i, w in enumerate(path))
        label = f"EPT A/D assist ({tree.name})"
    visible(label, acc + tlb_fill_accesses(tlb, gfn) + ((requests, READ),) + write_acc)
    for w in path:
        note_read(w)
    note_read(requests)


def tlb_lookup_point(tlb: Any, requests: Any, write_acc: tuple = ()) -> None:
    """The scheduling point of a guest instruction: a TLB lookup, and the check
    for a pending request (a kick makes the vCPU leave guest mode)."""
    visible("guest write" if write_acc else "guest read",
            ((tlb, READ), (requests, READ)) + write_acc)
    note_read(tlb)
    note_read(requests)


def guest_write_accesses(kvm: Any, as_id: int, gfn: int) -> tuple:
    """What a guest write touches besides the TLB and the EPT: the page's *ghost*
    word, which only properties read (it orders the write against a dirty-log
    read, say, which the model's own state would not), and the memslots the
    properties look the page up in, in the same step as the write."""
    return ((kvm.ghost(as_id, gfn), WRITE), (kvm.memslots[as_id], READ))


def tlb_flush(tlbs: list[Any], label: str) -> None:
    """Empty the TLBs of the given vCPUs at once: an update of each TLB (two
    flushes commute, both leave it empty; a fill writes it, a lookup reads it)."""
    mode = update_mode()
    if TLB_GRANULARITY[0] == "whole":
        visible(label, tuple((t, mode) for t in tlbs))
    else:
        visible(label, tuple(a for t in tlbs for a in ((t, mode), (_tlb_word(t, None), mode))))
    for t in tlbs:
        t.entries.clear()
        t.version += 1


def atomic_or(var: Any, bits: int, label: str) -> None:
    """``set_bit``: one atomic read-modify-write of a shared word, an update
    (OR-ing bits in commutes with OR-ing bits in; the vCPU's test-and-clear
    reads and writes the word, so it is ordered against both)."""
    visible(label, ((var, update_mode()),))
    var.value |= bits
    var.version += 1


def test_and_clear(var: Any, bits: int, label: str) -> bool:
    """``kvm_check_request``: test and clear a request bit in one step."""
    visible(label, ((var, WRITE),))
    hit = bool(var.value & bits)
    if hit:
        var.value &= ~bits
        var.version += 1
    return hit


def bitmap_point(bitmap: list[int], label: str, write: bool) -> None:
    """A visible access of a memslot's dirty bitmap (the list is the object):
    a read (``write`` false), or ``set_bit_le`` setting a bit, an update (setting
    bits commutes with setting bits: either order leaves them set, and the
    setter does not look at the word)."""
    visible(label, ((bitmap, update_mode() if write else READ),))


class Ghost:
    """A word only properties read: the history of guest writes to one page."""

    __slots__ = ("name", "version", "__weakref__")

    def __init__(self, name: str) -> None:
        self.name = name
        self.version = 0


def ghost_point(ghosts: list[Any], label: str) -> None:
    """A property observes the ghost words: a visible read of them."""
    visible(label, tuple((g, READ) for g in ghosts))


def note(text: str, who: int | None = None) -> None:
    """Annotate the current step of a traced run (e.g. a refcount change).

    ``who`` names the model function the report credits: 0 the function calling
    ``note``, 1 its caller (``kvm_mmu_get_root``'s caller is who took the
    reference); the note then reads ``function: text``.
    """
    if who is not None:
        frame = sys._getframe(1)
        for _ in range(who):
            if frame.f_back is None:
                break
            frame = frame.f_back
        text = f"{frame.f_code.co_name}: {text}"
    mark(text)
