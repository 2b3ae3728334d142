"""6.9's TLB contract for invalid roots: entries filled through one are owed no flush.

Two false reports an earlier session found on ``v6.9`` (replayed here by their
tokens), and the lost flushes the checker must still catch on ``v6.9``.
"""

from __future__ import annotations

from typing import Any

import pytest
from props_lib import messages

from tdpmmu.checker import check, replay
from tdpmmu.engine import cpu_relax
from tdpmmu.kernel import call_rcu
from tdpmmu.kvm import shared as sh
from tdpmmu.kvm.spte import (
    KVM_PAGES_PER_HPAGE,
    PT64_ENT_PER_PAGE,
    REMOVED_SPTE,
    is_removed_spte,
    is_shadow_present_pte,
)
from tdpmmu.kvm.tdp_mmu import kvm_mmu_page_as_id
from tdpmmu.kvm.versions import V6_9

# (scenario, token, the property that reported before the fix, whether the
# exemption is 6.9's contract's own: the first is a vCPU inside kvm_mmu_load,
# whose entries no contract charges, see properties.tlb.tlb_unusable)
FALSE_REPORTS = [
    # vcpu1 frees its invalid root r0 and sets r1 in kvm_tdp_mmu_alloc_root
    # while its TLB still holds r0's entry for gfn 9 (kvm_mmu_load's flush
    # comes next); the fast zap then zaps r0's SPTE for gfn 9, owing no flush.
    ("invalidate-vs-free-under-read-lock", "s1.eNpjYmNQZxFlOM_IwsTAwqIMAAorAUo",
     "tlb-coherence", False),
    # The fast zap zaps invalid r0's SPTE for gfn 9 without a flush; the
    # notifier's invalidate_range_start for its hva then finds nothing to zap
    # and returns while vcpu0, still on r0 with KVM_REQ_MMU_FREE_OBSOLETE_ROOTS
    # pending, caches gfn 9 in its TLB.
    # (Found as s1.eNpjaGFkEmPIZ7EFAAY8AU4; re-recorded with one more host step,
    # the declared read of invalidated-roots-zapped when kvm_mmu_zap_all_fast
    # returns.)
    ("memslot-vs-fault-and-notifier", "s1.eNpjaGFkEmMoYLEFAAY_AU8", "mmu-notifier", True),
]


@pytest.mark.parametrize(("scenario", "token", "prop", "contracts_own"), FALSE_REPORTS)
def test_stale_entries_of_invalid_roots_are_not_reported_on_v6_9(scenario, token, prop,
                                                                  contracts_own):
    res = replay("v6.9", scenario, token)
    assert res.violation is None, messages(res.violation)


class _ContractWithoutInvalidRoots(V6_9):
    """6.9's code judged by the 5.10 contract: every zap owes a flush."""

    name = "v6.9+contract-before-unlock"
    tlb_flush_contract = "before-unlock"


@pytest.mark.parametrize(("scenario", "token", "prop"),
                         [case[:3] for case in FALSE_REPORTS if case[3]])
def test_the_exemption_is_the_declared_contracts(scenario, token, prop):
    """The same interleaving is reported once the class no longer declares
    6.9's contract (by whichever TLB check sees it first): the exemption comes
    from ``tlb_flush_contract``, not from the version."""
    res = replay(_ContractWithoutInvalidRoots, scenario, token)
    assert res.violation is not None
    assert any(m.startswith(("tlb-coherence", prop)) for m in messages(res.violation)), \
        messages(res.violation)


class _ZapLeafsLosesFlush(V6_9):
    """``tdp_mmu_zap_leafs`` asks for no flush for a *valid* root either."""

    name = "v6.9+zap-leafs-no-flush"

    def tdp_mmu_zap_leafs(self, kvm: Any, root: Any, start: int, end: int,
                          can_yield: bool, flush: bool) -> bool:
        super().tdp_mmu_zap_leafs(kvm, root, start, end, can_yield, flush)
        return False


class _LoadWithoutFlush(V6_9):
    """``kvm_mmu_load`` without its local flush, the one 6.9's comment relies
    on: a vCPU carries its old root's entries onto its new root.

    The model's ``handle_removed_tdp_mmu_page`` (from v5.12) still flushes
    every TLB after unlinking a page table, which 5.18's ``handle_removed_pt``
    no longer does and which would mask the lost flush here; this variant
    drops that flush too, as 6.9 has it.
    """

    name = "v6.9+load-without-flush"

    def kvm_mmu_load(self, vcpu: Any) -> int:
        return self.mmu_alloc_roots(vcpu)

    def handle_removed_tdp_mmu_page(self, kvm: Any, sp: Any, shared: bool) -> None:
        level = sp.role.level
        self.tdp_mmu_unlink_page(kvm, sp, shared)
        for i in range(PT64_ENT_PER_PAGE):
            gfn = sp.gfn + i * KVM_PAGES_PER_HPAGE(level - 1)
            if shared:
                while True:
                    old_child_spte = sh.xchg_spte(sp, i, REMOVED_SPTE)
                    if not is_removed_spte(old_child_spte):
                        break
                    cpu_relax()
            else:
                old_child_spte = sp.spt[i]
                if not is_shadow_present_pte(old_child_spte):
                    continue
                sh.write_spte(sp, i, REMOVED_SPTE)
            self.handle_changed_spte(kvm, kvm_mmu_page_as_id(sp), gfn, old_child_spte,
                                     REMOVED_SPTE, level - 1, shared)
        call_rcu(sp.rcu_head, self.tdp_mmu_free_sp_rcu_callback(kvm))


def test_v6_9_verifies_the_tlb_scenarios():
    res = check("v6.9", "zap-range-tlb")
    assert res.violation is None, messages(res.violation)
    assert res.result.complete


def test_a_lost_flush_of_a_valid_root_is_reported_on_v6_9():
    res = check(_ZapLeafsLosesFlush, "zap-range-tlb")
    assert res.violation is not None
    assert any(m.startswith("tlb-coherence: host dropped mmu_lock")
               for m in messages(res.violation)), messages(res.violation)


class _NoRemovedPtFlush(_LoadWithoutFlush):
    """Only the page-table removal without a flush (as 6.9 has it): the control."""

    name = "v6.9+no-removed-pt-flush"

    def kvm_mmu_load(self, vcpu: Any) -> int:
        return V6_9.kvm_mmu_load(self, vcpu)


def test_the_flush_the_exemption_relies_on_is_checked():
    """Without kvm_mmu_load's flush an entry filled through an invalid root
    is used after the host took its page away: the exemption trusts that
    flush, so losing it is reported (at the guest's access); with it, the
    same search verifies."""
    res = check(_LoadWithoutFlush, "memslot-vs-fault-and-notifier", max_executions=3000)
    assert res.violation is not None
    assert any("use-after-free of host frame" in m for m in messages(res.violation)), \
        messages(res.violation)
    res = check(_NoRemovedPtFlush, "memslot-vs-fault-and-notifier", max_executions=3000)
    assert res.violation is None, messages(res.violation)
