"""5.18's deferred TLB flush for removed page tables (bb95dfb9e2df).

``handle_removed_pt`` no longer flushes: the page table's remover owes the
flush, before it drops RCU ("Flows that can remove SPs must service pending
TLB flushes prior to dropping RCU protection", 5.18's ``tdp_iter.h``), and
invalid roots and ``kvm_tdp_mmu_zap_all`` are zapped with none at all.  The
released versions verify under that contract; what-ifs that lose one of the
flushes the callers owe are reported, on v5.18 and on v6.9.
"""

from __future__ import annotations

from typing import Any

import pytest
from props_lib import messages, run, scen

from tdpmmu.checker import check
from tdpmmu.kvm.spte import (
    ACC_ALL,
    SET_SPTE_WRITE_PROTECTED_PT,
    is_mmio_spte,
    make_mmio_spte,
    make_spte,
)
from tdpmmu.kvm.structs import KVM_REQ_TLB_FLUSH_CURRENT
from tdpmmu.kvm.tdp_mmu import RET_PF_EMULATE, RET_PF_RETRY, RET_PF_SPURIOUS
from tdpmmu.kvm.v5_12 import V5_12
from tdpmmu.kvm.v5_17 import V5_17
from tdpmmu.kvm.versions import V5_18, V6_9

HUGE = "huge-leaf-over-page-table"


def _fault_loses_flush(base: type) -> type:
    """``tdp_mmu_map_handle_target_level`` without the flush bb95dfb9e2df gave
    it: a huge leaf replaces a page table and nobody flushes."""

    class FaultLosesFlush(base):  # type: ignore[misc, valid-type]
        name = f"{base.name}+fault-loses-flush"

        def tdp_mmu_map_handle_target_level(self, vcpu: Any, write: bool, map_writable: bool,
                                            it: Any, pfn: int | None, prefault: bool) -> int:
            kvm = vcpu.kvm
            make_spte_ret = 0
            ret = RET_PF_RETRY
            if pfn is None:
                new_spte = make_mmio_spte(it.gfn, self.kvm_memslots_generation(kvm, vcpu),
                                          ACC_ALL)
            else:
                make_spte_ret, new_spte = make_spte(it.level, pfn, ACC_ALL, prefault,
                                                    map_writable, False)
            if new_spte == it.old_spte:
                ret = RET_PF_SPURIOUS
            elif not self.tdp_mmu_set_spte_atomic(kvm, it, new_spte):
                return RET_PF_RETRY
            if make_spte_ret & SET_SPTE_WRITE_PROTECTED_PT:
                if write:
                    ret = RET_PF_EMULATE
                self.kvm_make_request(KVM_REQ_TLB_FLUSH_CURRENT, vcpu)
            if is_mmio_spte(new_spte):
                ret = RET_PF_EMULATE
            return ret

    return FaultLosesFlush


def _yield_loses_flush(base: type) -> type:
    """``tdp_mmu_iter_cond_resched`` drops the flush it was asked for."""

    class YieldLosesFlush(base):  # type: ignore[misc, valid-type]
        name = f"{base.name}+yield-loses-flush"

        def tdp_mmu_iter_cond_resched(self, kvm: Any, it: Any, flush: bool = False,
                                      shared: bool = False) -> bool:
            return super().tdp_mmu_iter_cond_resched(kvm, it, False, shared)

    return YieldLosesFlush


def _zap_leafs_loses_flush(base: type) -> type:
    """``tdp_mmu_zap_leafs`` returns no flush for what it zapped."""

    class ZapLeafsLosesFlush(base):  # type: ignore[misc, valid-type]
        name = f"{base.name}+zap-leafs-loses-flush"

        def tdp_mmu_zap_leafs(self, kvm: Any, root: Any, start: int, end: int,
                              can_yield: bool, flush: bool) -> bool:
            super().tdp_mmu_zap_leafs(kvm, root, start, end, can_yield, flush)
            return False

    return ZapLeafsLosesFlush


# The host zaps two pages a vCPU caches; the walk yields between them with
# the first one's flush pending.
YIELD_WITH_PENDING_FLUSH = scen(
    {"host": [{"op": "zap_gfn_range", "base_gfn": 1, "npages": 2}],
     "vcpu0": [run(0, "read 0x1")]},
    [run(0, "write 0x1", "write 0x2")])


def test_handle_removed_pt_is_5_18s_and_leaves_the_flush_to_its_caller():
    """0f53dfa34efa's name from 5.18 on; 5.12-5.17 keep their own."""
    assert "handle_removed_pt" in V5_18.__dict__
    assert not hasattr(V5_17, "handle_removed_pt")
    assert V5_17.handle_removed_tdp_mmu_page is V5_12.handle_removed_tdp_mmu_page
    assert V5_18.tlb_flush_contract == "before-unlock-valid-root"
    assert V5_17.tlb_flush_contract == "before-unlock"


@pytest.mark.parametrize("kernel", ["v5.17", "v5.18", "v6.9"])
def test_a_huge_leaf_over_a_page_table_verifies_on_the_releases(kernel):
    """5.17 flushes in handle_removed_tdp_mmu_page, 5.18 and 6.9 in the fault:
    every interleaving with up to one preemption, the bound that finds the
    lost flush below, verifies."""
    res = check(kernel, HUGE, strategy="bounded", preemption_bound=1)
    assert res.violation is None, messages(res.violation)
    assert res.result.cut_by == "preemption_bound" and res.result.executions > 100


@pytest.mark.parametrize("base", [V5_18, V6_9])
def test_a_fault_that_loses_its_flush_is_reported_when_the_table_is_freed(base):
    """The entry still translates to the right frame (the huge page maps the
    same one), so only the page table's free tells it from a fresh one."""
    res = check(_fault_loses_flush(base), HUGE, strategy="bounded", preemption_bound=1)
    assert res.violation is not None
    assert any(m.startswith("tlb-coherence: page table ") and "cached through it" in m
               for m in messages(res.violation)), messages(res.violation)


@pytest.mark.parametrize("base", [V5_18, V6_9])
def test_a_yield_that_loses_the_pending_flush_is_reported(base):
    assert check(base, YIELD_WITH_PENDING_FLUSH).violation is None
    res = check(_yield_loses_flush(base), YIELD_WITH_PENDING_FLUSH)
    assert res.violation is not None
    assert any(m.startswith("tlb-coherence: host dropped mmu_lock in tdp_mmu_iter_cond_resched")
               for m in messages(res.violation)), messages(res.violation)


@pytest.mark.parametrize("base", [V5_18, V6_9])
def test_a_zap_that_loses_its_flush_is_reported(base):
    res = check(_zap_leafs_loses_flush(base), "zap-range-tlb")
    assert res.violation is not None
    assert any(m.startswith("tlb-coherence: host dropped mmu_lock")
               for m in messages(res.violation)), messages(res.violation)


class _V5_18WithV5_17Contract(V5_18):
    """5.18's code judged by 5.17's contract: every zap owes a flush by unlock."""

    name = "v5.18+contract-before-unlock"
    tlb_flush_contract = "before-unlock"


def test_5_18s_unflushed_zap_of_an_invalid_root_is_its_contracts():
    """The zap work zaps the invalid root with no flush (tdp_mmu_zap_root_work's
    comment); under 5.17's contract that is a (false) report, under 5.18's it
    verifies."""
    res = check("v5.18", "memslot-delete-then-munmap")
    assert res.violation is None and res.result.complete
    res = check(_V5_18WithV5_17Contract, "memslot-delete-then-munmap")
    assert res.violation is not None
    assert res.violation.message.startswith("tlb-coherence: kworker"), res.violation.message
