"""Linux 5.12 (``V5_12``): mmu_lock an rwlock, TDP faults under the read lock."""

from __future__ import annotations

from typing import Any

import pytest

from tdpmmu.checker import check
from tdpmmu.kernel import rwlock_t
from tdpmmu.kvm import shared
from tdpmmu.kvm.spte import REMOVED_SPTE
from tdpmmu.kvm.tdp_iter import tdp_iter_root_pt
from tdpmmu.kvm.tdp_mmu import kvm_mmu_page_as_id
from tdpmmu.kvm.v5_12 import V5_12
from tdpmmu.kvm.versions import BUILTIN, V5_11
from tdpmmu.scenarios import scenario_names

# Findings of the released v5.12 on built-in scenarios (the closing note explains
# each): 5.12's test_age_gfn walks SPTEs without rcu_read_lock (lockdep's
# PROVE_RCU splat; 5.13's kvm_tdp_mmu_handle_gfn takes the read side).
KNOWN = {"change-pte-and-age": ("WARNING: suspicious RCU usage",)}


def test_v5_12_is_built_in_and_a_v5_11():
    assert BUILTIN["v5.12"] is V5_12
    assert issubclass(V5_12, V5_11)


@pytest.mark.parametrize("name", scenario_names())
def test_v5_12_runs_every_builtin_scenario(name):
    """Bounded so CI stays fast; the note records the complete runs."""
    res = check("v5.12", name, max_executions=15)
    assert res.result.executions >= 1
    if res.violation is not None:
        assert name in KNOWN and res.violation.message.startswith(KNOWN[name]), \
            res.violation.message


def test_two_vcpus_fault_under_the_read_lock_verifies():
    res = check("v5.12", "two-vcpus-fault")
    assert res.result.complete and res.violation is None
    # The faults really run in parallel: some execution has both inside
    # kvm_tdp_mmu_map at once, which the write-locked v5.11 never allows,
    # so v5.12 explores more interleavings of the same scenario.
    assert res.result.executions > check("v5.11", "two-vcpus-fault").result.executions


class PlainStoreInsteadOfCmpxchg(V5_12):
    """What-if: a read-locked fault stores its SPTE without cmpxchg."""

    name = "v5.12+plain-store"

    def tdp_mmu_set_spte_atomic(self, kvm: Any, it: Any, new_spte: int) -> bool:
        if it.old_spte == REMOVED_SPTE:
            return False
        shared.write_spte(it.sp, it.index, new_spte)
        self.handle_changed_spte(kvm, kvm_mmu_page_as_id(tdp_iter_root_pt(it)), it.gfn,
                                 it.old_spte, new_spte, it.level, True)
        return True


def test_a_fault_without_cmpxchg_is_reported():
    """Two faults install page tables for the same SPTE: without cmpxchg the
    second overwrites the first, whose table (and mapping) is orphaned."""
    res = check(PlainStoreInsteadOfCmpxchg, "two-vcpus-fault")
    assert res.violation is not None


def test_v5_12_mmu_lock_is_an_rwlock():
    res = check("v5.12", "two-vcpus-fault", max_executions=1)
    world = res.model.setup()
    assert isinstance(world.kvm.mmu_lock, rwlock_t)
