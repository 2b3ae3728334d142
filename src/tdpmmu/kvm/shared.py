"""The visible operations of the KVM model: what other threads can see without a lock.

Three kinds of KVM state are touched outside ``mmu_lock`` and so must be
scheduling points:

* SPTEs: the kernel stores them with ``WRITE_ONCE`` under ``mmu_lock``, and a
  vCPU's hardware page walk reads them with no lock at all.  A store is a
  write of the *root* the page belongs to and a hardware walk reads that root:
  a walk is atomic with respect to stores (a remote TLB flush waits for
  vCPUs to leave guest mode, so no walk straddles an unlink-flush-free
  sequence), and one object per root keeps the dependency exact enough.
  Not modelled: ``get_mmio_spte``'s software walk (``kvm_tdp_mmu_get_walk``)
  runs in host mode with no lock at v5.10/v5.11 (RCU protection came in
  5.12), so the flush does not wait for it and a page table could be freed
  under it; the model walks atomically there too, so that window is not
  explored.
* vCPU request bits and TLBs, set and flushed by other threads.
* words read locklessly by the fault path (memslots, the MMU-notifier
  sequence, the host page tables), which are engine ``Var``s.
"""

from __future__ import annotations

import sys
from typing import Any

from ..engine import READ, WRITE, mark, note_read, visible


def write_spte(sp: Any, index: int, new_spte: int) -> None:
    """``WRITE_ONCE(*sptep, new_spte)``."""
    root = sp.root
    visible(f"WRITE_ONCE(spte {sp.name}[{index}])", ((root, WRITE),))
    sp.spt[index] = new_spte
    root.version += 1


def read_spte(sp: Any, index: int) -> int:
    """``READ_ONCE(*sptep)`` by a walker that does not exclude writers (5.12+)."""
    root = sp.root
    visible(f"READ_ONCE(spte {sp.name}[{index}])", ((root, READ),))
    note_read(root)
    return sp.spt[index]


def cmpxchg_spte(sp: Any, index: int, old_spte: int, new_spte: int) -> int:
    """``cmpxchg64(sptep, old_spte, new_spte)``: one atomic step; returns the old value."""
    root = sp.root
    visible(f"cmpxchg64(spte {sp.name}[{index}])", ((root, WRITE),))
    note_read(root)
    cur = sp.spt[index]
    if cur == old_spte:
        sp.spt[index] = new_spte
        root.version += 1
    return cur


def fetch_and_spte(sp: Any, index: int, mask: int) -> int:
    """``atomic64_fetch_and(mask, sptep)`` (6.4's ``tdp_mmu_clear_spte_bits_atomic``
    clears bits with a LOCK AND): one atomic step; returns the old value."""
    root = sp.root
    visible(f"atomic64_fetch_and(spte {sp.name}[{index}])", ((root, WRITE),))
    note_read(root)
    cur = sp.spt[index]
    if cur & ~mask != cur:
        sp.spt[index] = cur & mask
        root.version += 1
    return cur


def xchg_spte(sp: Any, index: int, new_spte: int) -> int:
    """``xchg(sptep, new_spte)``: one atomic step; returns the old value."""
    root = sp.root
    visible(f"xchg(spte {sp.name}[{index}])", ((root, WRITE),))
    note_read(root)
    cur = sp.spt[index]
    sp.spt[index] = new_spte
    root.version += 1
    return cur


def hardware_walk_point(root: Any, tlb: Any, requests: Any, write_acc: tuple = ()) -> None:
    """The scheduling point of one hardware page walk of ``root`` that may fill ``tlb``
    (and complete a guest write: ``write_acc``, see :func:`guest_write_accesses`)."""
    visible(f"EPT walk {root.name}", ((root, READ), (tlb, WRITE), (requests, READ)) + write_acc)
    note_read(root)
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
    """Empty the TLBs of the given vCPUs at once."""
    visible(label, tuple((t, WRITE) for t in tlbs))
    for t in tlbs:
        t.entries.clear()
        t.version += 1


def atomic_or(var: Any, bits: int, label: str) -> None:
    """``set_bit``: one atomic read-modify-write of a shared word."""
    visible(label, ((var, WRITE),))
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
    """A visible access of a memslot's dirty bitmap (the list is the object)."""
    visible(label, ((bitmap, WRITE if write else READ),))


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
