"""CONFIG_PROVE_RCU on the TDP MMU's SPTE loads: from 5.12 each is an
``rcu_dereference``, and a walk outside ``rcu_read_lock()`` is lockdep's
"suspicious RCU usage" whatever ``mmu_lock`` mode the walker holds."""

from __future__ import annotations

from typing import Any

from kvm_testlib import run_vcpu, scenario

from tdpmmu.checker import check
from tdpmmu.kernel import lockdep_assert_held_write
from tdpmmu.kvm.spte import PG_LEVEL_4K, is_last_spte, is_shadow_present_pte
from tdpmmu.kvm.tdp_iter import for_each_tdp_pte_min_level, tdp_iter
from tdpmmu.kvm.v6_9 import V6_9
from tdpmmu.kvm.versions import V5_11

ZAP_RANGE = scenario([run_vcpu(0, "write 0x1", "write 0x2")],
                     threads=[{"name": "host", "actions": [
                         {"op": "zap_gfn_range", "base_gfn": 0, "npages": 4}]}])


class _ZapLeafsOutsideRcu(V6_9):
    """6.9's ``tdp_mmu_zap_leafs`` with its ``rcu_read_lock``/``unlock`` lost."""

    name = "v6.9+zap-leafs-outside-rcu"

    def tdp_mmu_zap_leafs(self, kvm: Any, root: Any, start: int, end: int,
                          can_yield: bool, flush: bool) -> bool:
        end = min(end, self.max_gfn(kvm))
        lockdep_assert_held_write(kvm.mmu_lock)
        for it in for_each_tdp_pte_min_level(tdp_iter(kvm), root, root.role.level,
                                             PG_LEVEL_4K, start, end):
            if can_yield and self.tdp_mmu_iter_cond_resched(kvm, it, flush, False):
                flush = False
                continue
            if not is_shadow_present_pte(it.old_spte) or \
                    not is_last_spte(it.old_spte, it.level):
                continue
            self.tdp_mmu_set_spte(kvm, it, 0)
            flush = True
        return flush


def test_a_write_locked_walk_outside_rcu_is_suspicious_rcu_usage():
    assert check(V6_9, ZAP_RANGE).violation is None
    v = check(_ZapLeafsOutsideRcu, ZAP_RANGE).violation
    assert v is not None and v.kind == "lockdep", v
    assert v.message == "WARNING: suspicious RCU usage: suspicious rcu_dereference_check() usage!"
    assert "  tdp_mmu_zap_leafs" in v.details, v.details


def test_before_5_12_page_tables_are_not_rcu_protected():
    """5.11's walks hold no RCU read side (page tables are freed at once under
    the spinlock): no splat."""
    assert check(V5_11, ZAP_RANGE).violation is None


def test_released_v5_12_test_age_gfn_walks_outside_rcu():
    """5.12.9's ``test_age_gfn`` (the clear_flush_young notifier's test) walks
    with ``tdp_root_for_each_leaf_pte`` and no ``rcu_read_lock``; 5.13's
    ``kvm_tdp_mmu_handle_gfn`` wraps every handler in one.  Every execution
    runs ``test_age_gfn`` (v5.12's first one splats), so 300 executions of
    v5.13 without a splat show its walk is inside RCU; a complete search
    takes 59,964 executions (minutes: too long for the suite)."""
    v = check("v5.12", "change-pte-and-age").violation
    assert v is not None and v.kind == "lockdep", v
    assert "  test_age_gfn" in v.details, v.details
    assert check("v5.13", "change-pte-and-age", max_executions=300).violation is None
