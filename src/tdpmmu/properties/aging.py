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
hardware's setting of Accessed bits on later guest accesses is not modelled
(an SPTE is accessed when a non-speculative fault installs it), so the
flush after aging is not judged here.
"""

from __future__ import annotations

from typing import Any

from ..engine import report, visible
from ..engine.runtime import current_thread
from ..kvm.shared import root_reads, spte_word
from ..kvm.spte import is_accessed_spte, is_last_spte, is_shadow_present_pte, spte_to_pfn
from .peek import peek, roots_on_list
from .tlb import root_invalid
from .zap_range import leaf_entry


class AgingAnswers:
    name = "aging-young"

    def __init__(self, kvm: Any, lockless: bool = False) -> None:
        self.kvm = kvm
        # The version ages without mmu_lock: a young answer may come from a
        # snapshot a concurrent zap made stale (see the module docstring).
        self.lockless = lockless
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
        if event in ("kvm_tdp_mmu_spte_changed", "kvm_mmu_spte_changed"):
            self._spte_changed(f)
        elif event == "aging_called":
            gfns = self._gfns(f["start"], f["end"])
            self.calls[f["call"]] = {"gfns": set(gfns), "thread": current_thread(),
                                     "at_call": self._accessed(gfns, "called"),
                                     "cleared": False, "stored_young": False}
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
                call["cleared"] = True

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
            elif young != call["cleared"]:
                problem = ("it returned young but cleared no Accessed bit" if young else
                           "it cleared an Accessed bit but returned old")
        else:
            if not young and left:
                root, gfn, _w, _v, _s = left[0]
                problem = (f"it returned old while root {peek(root, 'name')}'s SPTE for gfn "
                           f"{gfn:#x} was accessed throughout")
            elif young and not self._was_accessed(call, at_return):
                problem = "it returned young but no SPTE of the range was accessed"
        if problem is not None:
            report("property", f"{self.name}: {what}(hva {f['start']:#x}-{f['end'] - 1:#x}) "
                   f"returned {int(young)}: {problem}",
                   f"kvm_mmu_notifier_{what if what == 'test_young' else 'clear_flush_young'}")
