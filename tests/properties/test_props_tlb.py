"""TLB coherence after a zap, each version's flush contract (issue 9, gap 1)."""

from __future__ import annotations

from typing import Any

import pytest

from tdpmmu.checker import check
from tdpmmu.kernel import cond_resched_lock
from tdpmmu.kvm.tdp_iter import tdp_iter_refresh_walk
from tdpmmu.kvm.versions import V5_11

TLB_SCENARIOS = ("zap-range-tlb", "zap-all-huge-tlb")


class _NoFlushBeforeYield(V5_11):
    name = "v5.11+no-flush-before-yield"

    def tdp_mmu_iter_flush_cond_resched(self, kvm: Any, it: Any) -> bool:
        if self.need_resched(kvm, it):
            cond_resched_lock(kvm.mmu_lock)
            tdp_iter_refresh_walk(it)
            return False
        return True


class _FlushAssigned(V5_11):
    name = "v5.11+flush-assigned"

    def kvm_tdp_mmu_zap_gfn_range(self, kvm: Any, start: int, end: int) -> bool:
        flush = False
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm):
            flush = self.zap_gfn_range(kvm, root, start, end, True)
        return flush


class _ZapAllWithoutFinalFlush(V5_11):
    name = "v5.11+zap-all-without-final-flush"

    def kvm_tdp_mmu_zap_all(self, kvm: Any) -> None:
        self.kvm_tdp_mmu_zap_gfn_range(kvm, 0, self.max_gfn(kvm))


def _found(kernel: type) -> list[str]:
    out = []
    for scenario in TLB_SCENARIOS:
        v = check(kernel, scenario).violation
        if v is not None:
            out.append(v.message)
    return out


@pytest.mark.parametrize("kernel", [_NoFlushBeforeYield, _FlushAssigned,
                                    _ZapAllWithoutFinalFlush])
def test_a_lost_flush_is_reported(kernel):
    found = _found(kernel)
    assert found and all(m.startswith("tlb-coherence: host dropped mmu_lock") for m in found), \
        found


@pytest.mark.parametrize("kernel", ["v5.10", "v5.11"])
def test_released_versions_keep_their_flush_contract(kernel):
    for scenario in TLB_SCENARIOS:
        res = check(kernel, scenario)
        assert res.violation is None, res.violation.message
        assert res.result.complete


def test_the_contract_is_the_versions_own():
    class _NoContract(_FlushAssigned):
        tlb_flush_contract = None
    assert _found(_NoContract) == []
