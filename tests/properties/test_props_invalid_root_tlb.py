"""6.9's TLB contract for invalid roots: entries filled through one are owed no flush.

Two false reports an earlier session found on ``v6.9`` (replayed here by their
tokens), and the lost flushes the checker must still catch on ``v6.9``.
"""

from __future__ import annotations

from typing import Any

import pytest
from props_lib import messages

from tdpmmu.checker import check, replay
from tdpmmu.kvm.versions import V6_9

# (scenario, token, the property that reported before the fix, whether the
# exemption is 6.9's contract's own: the first is a vCPU inside kvm_mmu_load,
# whose entries no contract charges, see properties.tlb.tlb_unusable)
FALSE_REPORTS = [
    # vcpu1 frees its invalid root r0 and sets r1 in kvm_tdp_mmu_alloc_root
    # while its TLB still holds r0's entry for gfn 9 (kvm_mmu_load's flush
    # comes next); the fast zap then zaps r0's SPTE for gfn 9, owing no flush.
    # (Found as s1.eNpjYmNQZxFlOM_IwsTAwqIMAAorAUo; re-recorded with three
    # host steps fewer, the flushes the page-table removal no longer makes
    # since bb95dfb9e2df: judged by 5.17's contract with the kvm_mmu_load
    # window not exempted, it still reports vcpu1's gfn 9 entry.)
    ("invalidate-vs-free-under-read-lock", "s1.eNpjYmNQYRFlOM_IwsTAwqIMAAoHAUc",
     "tlb-coherence", False),
    # The fast zap zaps invalid r0's SPTE for gfn 9 without a flush; the
    # notifier's invalidate_range_start for its hva then finds nothing to zap
    # and returns while vcpu0, still on r0 with KVM_REQ_MMU_FREE_OBSOLETE_ROOTS
    # pending, caches gfn 9 in its TLB.
    # (Found as s1.eNpjaGFkEmPIZ7EFAAY8AU4; re-recorded with one more host step,
    # the declared read of invalidated-roots-zapped when kvm_mmu_zap_all_fast
    # returns, as s1.eNpjaGFkEmMoYLEFAAY_AU8; then with three host steps
    # fewer, the page-table removal's flushes gone since bb95dfb9e2df, after
    # which 5.17's contract reports it at the zap's yield, tlb-coherence,
    # before the notifier does.)
    ("memslot-vs-fault-and-notifier", "s1.eNpjaGFkEmPIZbEFAAY2AUw", "mmu-notifier", True),
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
    on: a vCPU carries its old root's entries onto its new root.  (Earlier
    the model's page-table removal still flushed, as 5.17's did, and masked
    this; ``handle_removed_pt`` has no flush from 5.18's bb95dfb9e2df on.)"""

    name = "v6.9+load-without-flush"

    def kvm_mmu_load(self, vcpu: Any) -> int:
        return self.mmu_alloc_roots(vcpu)


def test_v6_9_verifies_the_tlb_scenarios():
    res = check("v6.9", "zap-range-tlb")
    assert res.violation is None, messages(res.violation)
    assert res.result.complete


def test_a_lost_flush_of_a_valid_root_is_reported_on_v6_9():
    res = check(_ZapLeafsLosesFlush, "zap-range-tlb")
    assert res.violation is not None
    assert any(m.startswith("tlb-coherence: host dropped mmu_lock")
               for m in messages(res.violation)), messages(res.violation)


def test_the_flush_the_exemption_relies_on_is_checked():
    """Without kvm_mmu_load's flush an entry filled through an invalid root
    is used after the host took its page away: the exemption trusts that
    flush, so losing it is reported (at the guest's access); with it, the
    same search verifies."""
    res = check(_LoadWithoutFlush, "memslot-vs-fault-and-notifier", max_executions=3000)
    assert res.violation is not None
    assert any("use-after-free of host frame" in m for m in messages(res.violation)), \
        messages(res.violation)
    res = check(V6_9, "memslot-vs-fault-and-notifier", max_executions=3000)
    assert res.violation is None, messages(res.violation)
