"""Linux 5.13 (``V5_13``): refcount_t roots on an RCU list, fast invalidation."""

from __future__ import annotations

from typing import Any

import pytest

from tdpmmu.checker import check
from tdpmmu.kernel import refcount_inc
from tdpmmu.kvm.v5_12 import V5_12
from tdpmmu.kvm.v5_13 import V5_13, role_invalid
from tdpmmu.kvm.versions import BUILTIN
from tdpmmu.scenarios import scenario_names

# Findings of the released v5.13 on built-in scenarios (the closing note explains each).
# The notifier's properties: "mmu-notifier" (checked when invalidate_range_start
# returns) and "invalidation-complete" (at invalidate_range_end).
NOTIFIER_PROPS = ("mmu-notifier", "invalidation-complete")
KNOWN = {"notifier-yield-vs-last-put": ("BUG: KASAN: use-after-free",)}


def test_v5_13_is_built_in_and_a_v5_12():
    assert BUILTIN["v5.13"] is V5_13
    assert issubclass(V5_13, V5_12)


@pytest.mark.parametrize("name", scenario_names())
def test_v5_13_runs_every_builtin_scenario(name):
    """Bounded so CI stays fast; the note records the complete runs."""
    res = check("v5.13", name, max_executions=15)
    assert res.result.executions >= 1
    if res.violation is not None:
        assert name in KNOWN and res.violation.message.startswith(KNOWN[name]), \
            res.violation.message


def test_v5_13_notifier_unmap_yields_in_a_root_it_holds_no_reference_on():
    """7533377215b6 ("KVM: x86/mmu: Use yield-safe TDP MMU root iter in MMU
    notifier unmapping", 5.16, Cc stable; Fixes: e1eed5847b09 of 5.13): 5.13's
    generic notifier unmap walks the roots with the plain for_each_tdp_mmu_root
    and lets the zap yield; the vCPU's last put frees the root meanwhile.
    (The same walk includes invalid roots, so on 5.13 the MMU notifier does
    zap a root that a memslot update is still zapping: d62007edf01f's bug
    needs set_nx_huge_pages racing .release there, which the model lacks.)"""
    res = check("v5.13", "notifier-yield-vs-last-put")
    assert res.violation is not None
    assert res.violation.message.startswith("BUG: KASAN: use-after-free")


class PlainIncrementGetRoot(V5_13):
    """What-if: kvm_tdp_mmu_get_root with refcount_inc instead of
    refcount_inc_not_zero (a dying root could be revived)."""

    name = "v5.13+plain-inc-get-root"

    def kvm_tdp_mmu_get_root(self, kvm: Any, root: Any) -> bool:
        if role_invalid(root):
            return False
        refcount_inc(root.tdp_mmu_root_count)
        return True


def test_plain_increment_get_root_is_unreachable_on_v5_13():
    """On v5.13 a root's count reaches 0 only in a put, and a root walker's get
    can only race a put that runs under the read lock: the invalidated-root
    zapper and the dirty-logging walkers, all of which run under kvm->slots_lock
    (memslot ioctls), so no two of them overlap; every other get
    (kvm_tdp_mmu_get_vcpu_root_hpa, the notifier walks) and every other put
    (kvm_mmu_free_roots) hold mmu_lock for write.  So refcount_inc never sees
    a 0 here and the what-if verifies completely on a scenario where a vCPU
    drops its last root reference while a notifier walks the roots and
    another vCPU faults under the read lock.  It stays unreachable through
    6.6; 6.9, whose kvm_mmu_free_roots puts under the read lock, is the first
    version where it is reported (tests/kvm/test_v6_9.py,
    obsolete-root-put-vs-next-invalidation)."""
    res = check(PlainIncrementGetRoot, "last-root-put")
    assert res.result.complete and res.violation is None
