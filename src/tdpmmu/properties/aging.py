"""The MMU notifier's aging hooks answer young iff a mapping of the range was accessed.

``mmu_notifier_clear_flush_young`` (``include/linux/mmu_notifier.h``:
"clear_flush_young is called after the VM is test-and-clearing the young/accessed
bitflag in the pte. This way the VM will provide proper aging to the accesses
to the page through the secondary MMUs and not only to the ones through the
Linux pte") and ``test_young`` ("test_young is called to check the young/accessed
bitflag in the secondary pte. This is used to know if the page is frequently
used without actually clearing the flag or tearing down the secondary
mapping on the page").  KVM implements them in every modelled version with
``age_gfn_range`` / ``test_age_gfn`` (``tdp_mmu.c``) under ``mmu_lock``:
an SPTE is young when its Accessed bit is set (the model always has A/D
bits enabled, so the bit decides: ``is_accessed_spte``).  So:

- ``clear_flush_young`` returns young iff it cleared the Accessed bit of a
  leaf SPTE of the range (its own stores, seen in the SPTE tracepoint), and
  once it returns, no leaf SPTE that mapped the range with the Accessed bit
  when it was called still holds it unchanged (not stored to since: a fault
  or zap meanwhile is another thread's, not judged);
- ``test_young`` returns old while such an SPTE was accessed throughout the
  call (unchanged from the call to the return) only if it is wrong, and
  returns young only if some leaf SPTE of the range was accessed at the call,
  at the return, or was stored accessed in between.

Lockless aging (6.15, aa34b811650c "KVM: Allow lockless walk of SPTEs when
handing aging mmu_notifier event", x86 selecting
``CONFIG_KVM_MMU_LOCKLESS_AGING``): ``__kvm_tdp_mmu_age_gfn_range`` walks
under RCU alone and sets its answer from the iterator's snapshot of an
accessed leaf, before its ``atomic64_fetch_and`` clears the bit; a zap under
the read lock (the zap of invalidated roots, a fault replacing the SPTE) can
change the SPTE in between, so the bit it clears may no longer be there.
The commit accepts that answer (the SPTE was young when looked at, and a zap
loses the mapping anyway), so on a kernel class that says
``CONFIG_KVM_MMU_LOCKLESS_AGING`` ``clear_flush_young`` is judged as
``test_young`` is for its young answer: some leaf SPTE of the range was
accessed at the call, at the return, or stored accessed in between.  The
other rules stand there too.

Roots judged: the TDP MMU's roots of the address space of each memslot that
maps an hva of the range, except a root invalid at the return (no vCPU can
use it without reloading).  Simplified: the legacy MMU's SPTEs are not
snapshotted (they are not words the model tracks one by one); the young
answer of its rmap handlers still counts through their tracepoint.  The
CPU's A/D assist (``ept_ad_assist``: a guest access through a leaf whose
Accessed bit is clear sets it) is a store of a young SPTE like KVM's own.

The flush.  ``clear_flush_young`` is the hook that flushes ("clear_young is a
lightweight version of clear_flush_young. Like the latter, it is supposed to
test-and-clear the young/accessed bitflag in the secondary pte, but it may
omit flushing the secondary tlb", ``mmu_notifier.h``); KVM flushes when the
answer is young (``kvm_mmu_notifier_clear_flush_young``, 5.10 to 6.12: "if
(young) kvm_flush_remote_tlbs(kvm)", later through ``kvm_handle_hva_range``'s
``flush_on_ret``).  Without it a vCPU keeps the translation cached and its
next accesses leave the Accessed bit clear, so the page looks old to the next
aging pass although the guest uses it.  So on a version that flushes, once
``clear_flush_young`` returns, no vCPU TLB entry of a gfn whose Accessed bit
it cleared may still be usable while that leaf (of the root the entry was
filled through) is still old: a fill after the clear would have set the bit.
Not judged on a kernel class with ``CONFIG_KVM_ELIDE_TLB_FLUSH_IF_YOUNG``
(x86 selects it from 6.13, c59de1413391's merge: "KVM: x86: Don't emit TLB
flushes when aging SPTEs for mmu_notifiers"), which promises no flush.
"""

from __future__ import annotations

from typing import Any

from ..engine import report, visible
from ..engine.runtime import current_thread
from ..kvm.shared import check_reads, root_reads, spte_word, tlb_range_reads
from ..kvm.spte import (
    KVM_PAGES_PER_HPAGE,
    is_accessed_spte,
    is_last_spte,
    is_shadow_present_pte,
    spte_to_pfn,
)
from .peek import peek, roots_on_list
from .tlb import TlbProvenance, root_invalid
from .zap_range import leaf_entry


class AgingAnswers:
    name = "aging-young"

    def __init__(self, kvm: Any, lockless: bool = False,
                 provenance: TlbProvenance | None = None) -> None:
        self.kvm = kvm
        # The version ages without mmu_lock: a young answer may come from a
        # snapshot a concurrent zap made stale (see the module docstring).
        self.lockless = lockless
        # Through which root each TLB entry was filled; None: the version
        # promises no flush after aging, which is then not judged.
        self.provenance = provenance
        # call id -> state of one aging call
        self.calls: dict[int, dict[str, Any]] = {}

    def _gfns(self, start: int, end: int) -> list[tuple[int, int]]:
        out = []
        for as_id, slots in enumerate(self.kvm.memslots):
            for slot in slots.value.slots:
                for hva in range(max(start, slot.userspace_addr),
                                 min(end, slot.userspace_addr + slot.npages)):
                    out.append((as_id, slot.base_gfn + hva - slot.userspace_addr))
        return out

    def _accessed(self, gfns: list[tuple[int, int]], what: str) -> list[tuple[Any, ...]]:
        """(root, gfn, word, version, spte) of every accessed leaf mapping ``gfns``."""
        roots = [r for r in roots_on_list(self.kvm) if peek(r, "role") is not None]
        visible(f"property: aging ({what})", root_reads(peek(r, "root") for r in roots))
        out = []
        for root in roots:
            as_id = 1 if peek(root, "role").smm else 0
            for a, gfn in gfns:
                if a != as_id:
                    continue
                leaf = leaf_entry(self.kvm, root, gfn)
                if leaf is not None and is_accessed_spte(leaf[2]):
                    word = spte_word(leaf[0], leaf[1])
                    out.append((root, gfn, word, word.version, leaf[2]))
        return out

    def _unchanged(self, item: tuple[Any, ...]) -> bool:
        root, gfn, word, version, spte = item
        if root_invalid(root) or root not in roots_on_list(self.kvm):
            return False
        leaf = leaf_entry(self.kvm, root, gfn)
        return leaf is not None and leaf[2] == spte and word.version == version

    def probe(self, event: str, f: dict[str, Any]) -> None:
        if event in ("kvm_tdp_mmu_spte_changed", "kvm_mmu_spte_changed", "ept_ad_assist"):
            self._spte_changed(f)
        elif event == "aging_called":
            gfns = self._gfns(f["start"], f["end"])
            self.calls[f["call"]] = {"gfns": set(gfns), "thread": current_thread(),
                                     "at_call": self._accessed(gfns, "called"),
                                     "cleared": set(), "stored_young": False}
        elif event == "aging_returned":
            call = self.calls.pop(f["call"], None)
            if call is not None:
                self._judge(call, f)

    def _spte_changed(self, f: dict[str, Any]) -> None:
        old, new, level = f["old_spte"], f["new_spte"], f["level"]
        for call in self.calls.values():
            if (f["as_id"], f["gfn"]) not in call["gfns"]:
                continue
            new_leaf = is_shadow_present_pte(new) and is_last_spte(new, level)
            if new_leaf and is_accessed_spte(new):
                call["stored_young"] = True
            old_leaf = is_shadow_present_pte(old) and is_last_spte(old, level)
            if old_leaf and is_accessed_spte(old) and new_leaf and not is_accessed_spte(new) \
                    and spte_to_pfn(new) == spte_to_pfn(old) \
                    and current_thread() is call["thread"]:
                n = KVM_PAGES_PER_HPAGE(level)
                call["cleared"].update((f["as_id"], f["gfn"] + i) for i in range(n))

    @staticmethod
    def _was_accessed(call: dict[str, Any], at_return: list[tuple[Any, ...]]) -> bool:
        """Some leaf SPTE of the range was accessed at the call, at the return,
        or stored accessed in between."""
        return bool(call["at_call"] or at_return or call["stored_young"])

    def _judge(self, call: dict[str, Any], f: dict[str, Any]) -> None:
        young, what = bool(f["young"]), f["what"]
        gfns = sorted(call["gfns"])
        at_return = self._accessed(gfns, "returned")
        left = [i for i in call["at_call"] if self._unchanged(i)]
        problem = None
        if what == "clear_flush_young":
            if left:
                root, gfn, _w, _v, spte = left[0]
                problem = (f"root {peek(root, 'name')}'s SPTE for gfn {gfn:#x} (pfn "
                           f"{spte_to_pfn(spte):#x}) still has the Accessed bit it had at "
                           "the call")
            elif young and not call["cleared"] and self.lockless:
                if not self._was_accessed(call, at_return):
                    problem = "it returned young but no SPTE of the range was accessed"
            elif young != bool(call["cleared"]):
                problem = ("it returned young but cleared no Accessed bit" if young else
                           "it cleared an Accessed bit but returned old")
        else:
            if not young and left:
                root, gfn, _w, _v, _s = left[0]
                problem = (f"it returned old while root {peek(root, 'name')}'s SPTE for gfn "
                           f"{gfn:#x} was accessed throughout")
            elif young and not self._was_accessed(call, at_return):
                problem = "it returned young but no SPTE of the range was accessed"
        if problem is None and what == "clear_flush_young" and young:
            problem = self._still_cached(call["cleared"] & call["gfns"])
        if problem is not None:
            report("property", f"{self.name}: {what}(hva {f['start']:#x}-{f['end'] - 1:#x}) "
                   f"returned {int(young)}: {problem}",
                   f"kvm_mmu_notifier_{what if what == 'test_young' else 'clear_flush_young'}")

    def _still_cached(self, cleared: set[tuple[int, int]]) -> str | None:
        """A vCPU's TLB entry for a gfn whose Accessed bit the call cleared, usable
        at the return while that leaf is still old (see the module doc: the
        flush).  A step of its own that declares the TLB entries and walks it
        reads, so that DPOR orders it against the vCPUs' fills and flushes."""
        if self.provenance is None or not cleared:
            return None
        gfns = sorted({g for _a, g in cleared})
        # Entries filled through a root that is gone or invalid now are the
        # TLB checks' to judge: a vCPU cannot use that root without a reload.
        live = {id(r) for r in roots_on_list(self.kvm) if not root_invalid(r)}
        roots = {id(r): r for v in self.kvm.vcpus for g in gfns
                 if id(r := self.provenance.root.get((v.vcpu_id, g))) in live}
        visible("property: aging (TLB after the flush)",
                tuple(a for v in self.kvm.vcpus for a in tlb_range_reads(v.tlb, gfns))
                + check_reads(roots.values(), gfns))
        for v in self.kvm.vcpus:
            for gfn, entry in self.provenance.entries(v):
                root = self.provenance.root.get((v.vcpu_id, gfn))
                if root is None or id(root) not in roots:
                    continue
                if (1 if peek(root, "role").smm else 0, gfn) not in cleared:
                    continue
                leaf = leaf_entry(self.kvm, root, gfn)
                if leaf is not None and not is_accessed_spte(leaf[2]):
                    return (f"vcpu{v.vcpu_id}'s TLB still caches gfn {gfn:#x} -> pfn "
                            f"{entry[0]:#x} although it cleared that SPTE's Accessed bit "
                            "(no TLB flush): the guest's accesses will not make it young")
        return None
