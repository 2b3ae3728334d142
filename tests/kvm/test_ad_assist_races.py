"""The CPU's Accessed-bit update races KVM's read-locked cmpxchg walks (5.13+):
the write-protect walk of dirty-log enable must retry when the cmpxchg fails.
Reachable since the model's hardware sets Accessed bits (an aged page's next
access), through the built-in dirty-log-enable-after-aging scenario."""

from __future__ import annotations

from typing import Any

import pytest

from tdpmmu.checker import check
from tdpmmu.kernel import BUG_ON, rcu_read_lock, rcu_read_unlock
from tdpmmu.kvm.spte import PG_LEVEL_2M, PT_WRITABLE_MASK, is_last_spte, is_shadow_present_pte
from tdpmmu.kvm.tdp_iter import for_each_tdp_pte_min_level, tdp_iter
from tdpmmu.kvm.v5_13 import V5_13
from tdpmmu.kvm.v6_9 import V6_9

SCENARIO = "dirty-log-enable-after-aging"


def _wrprot_gfn_range_without_retry(self: Any, kvm: Any, root: Any, start: int, end: int,
                                    min_level: int) -> bool:
    """5.13's ``wrprot_gfn_range`` that moves on when its cmpxchg fails."""
    spte_set = False
    rcu_read_lock()
    BUG_ON(min_level > PG_LEVEL_2M)
    for it in for_each_tdp_pte_min_level(tdp_iter(kvm), root, root.role.level, min_level,
                                         start, end):
        if self.tdp_mmu_iter_cond_resched(kvm, it, False, True):
            continue
        if not is_shadow_present_pte(it.old_spte) or \
                not is_last_spte(it.old_spte, it.level) or \
                not it.old_spte & PT_WRITABLE_MASK:
            continue
        if self.tdp_mmu_set_spte_atomic_no_dirty_log(kvm, it, it.old_spte & ~PT_WRITABLE_MASK):
            spte_set = True
    rcu_read_unlock()
    return spte_set


class _V5_13NoRetry(V5_13):
    name = "v5.13+wrprot-without-retry"
    wrprot_gfn_range = _wrprot_gfn_range_without_retry


@pytest.mark.parametrize("scenario", [SCENARIO, "dirty-log-pml-enable-after-aging"])
def test_the_released_versions_verify_the_race(scenario):
    """With PML, a guest write racing the enable sets the Dirty bit through the
    assist; a kick pending at the assist ends the instruction (it restarts
    after the exit, with PML on), else the write would straddle the enable's
    TLB flush and go unlogged: a false report on v5.12-v6.9 before."""
    for kernel in ("v5.11", "v5.12", "v5.13", "v6.9"):
        r = check(kernel, scenario)
        assert r.violation is None and r.result.complete, (kernel, r.violation)


def test_a_write_protect_walk_that_does_not_retry_is_reported():
    v = check(_V5_13NoRetry, SCENARIO).violation
    assert v is not None, "the CPU's A-bit update must be able to fail the cmpxchg"
    assert v.message.startswith("dirty-log-complete:"), v.message


@pytest.mark.parametrize("kernel", [V5_13, V6_9], ids=lambda k: k.name)
def test_the_cmpxchg_fails_on_the_cpus_update(kernel):
    """Some interleaving has the walk's cmpxchg fail (so the retry path runs)."""
    failed = []

    class Watched(kernel):
        name = f"{kernel.name}+watched"

        def tdp_mmu_set_spte_atomic_no_dirty_log(self, kvm: Any, it: Any, new: int) -> bool:
            ok = super().tdp_mmu_set_spte_atomic_no_dirty_log(kvm, it, new)
            failed.append(not ok)
            return ok

    r = check(Watched, SCENARIO)
    assert r.violation is None and any(failed), r.violation
