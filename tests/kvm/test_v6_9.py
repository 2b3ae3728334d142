"""Linux 6.9 (``V6_9``): roots looked up, allocated and freed under the read
lock; ``kvm_tdp_mmu_alloc_root``'s recheck under ``tdp_mmu_pages_lock``."""

from __future__ import annotations

import pytest
from kvm_testlib import do, roots, run_vcpu, scenario, vcpu_root, what_if, world

from tdpmmu.checker import check
from tdpmmu.kernel import refcount_inc, refcount_read
from tdpmmu.kvm.v6_6 import V6_6
from tdpmmu.kvm.v6_9 import V6_9
from tdpmmu.kvm.versions import BUILTIN
from tdpmmu.scenarios import scenario_names


def test_v6_9_is_built_in_a_v6_6():
    assert BUILTIN["v6.9"] is V6_9
    assert issubclass(V6_9, V6_6)


@pytest.mark.parametrize("name", scenario_names())
def test_v6_9_runs_every_builtin_scenario(name):
    """No finding on any built-in scenario (bounded here; the note has the runs)."""
    res = check("v6.9", name, max_executions=15)
    assert res.result.executions >= 1
    assert res.violation is None, res.violation.message


def test_a_second_vcpu_reuses_the_root_found_under_the_read_lock():
    w = world(V6_9, scenario([run_vcpu(0, "write 0x1"), run_vcpu(1, "read 0x2")], vcpus=2))
    root = vcpu_root(w.kvm.vcpus[0])
    assert vcpu_root(w.kvm.vcpus[1]) is root
    assert roots(w.kvm) == [root]
    assert refcount_read(root.tdp_mmu_root_count) == 3  # two vCPUs + the TDP MMU


def test_the_vcpus_put_runs_under_the_read_lock():
    """kvm_mmu_free_roots takes mmu_lock for read for a TDP MMU root (6.9):
    the put sees one reader and no writer."""
    w = world(V6_9, scenario([run_vcpu(0, "write 0x1")]))
    seen = []
    orig = w.k.kvm_tdp_mmu_put_root

    def spy(kvm, root):
        seen.append((w.kvm.mmu_lock.readers, w.kvm.mmu_lock.owner))
        orig(kvm, root)
    w.k.kvm_tdp_mmu_put_root = spy
    do(w, "vcpu_unload", vcpu=0)
    assert seen and seen[0][0] == 1 and seen[0][1] is None


class NoRecheck(V6_9):
    """What-if: 6.9's allocation without the recheck under tdp_mmu_pages_lock."""

    name = "v6.9+no-recheck"
    alloc_root_recheck = False


def test_two_vcpus_loading_roots_at_once_share_one_root():
    """With the recheck, no interleaving of up to two preemptions leaves two
    valid roots of one role."""
    res = check("v6.9", "two-vcpus-load-root", strategy="bounded", preemption_bound=2,
                max_executions=20000)
    assert res.violation is None, res.violation.message
    assert res.result.executions > 100


def test_dropping_the_recheck_is_reported_when_two_vcpus_load_roots_at_once():
    res = check(NoRecheck, "two-vcpus-load-root", strategy="bounded", preemption_bound=2,
                max_executions=20000)
    assert res.violation is not None
    assert "one-valid-root-per-role" in res.violation.message, res.violation.message


def test_only_6_9_declares_the_one_root_per_role_promise():
    """6.6 never promised it (it looks up and allocates under the write lock),
    so the property is not installed there."""
    assert not getattr(V6_6, "promises_one_valid_root_per_role", False)
    assert V6_9.promises_one_valid_root_per_role


def test_an_invalidation_racing_a_root_freed_under_the_read_lock_verifies():
    res = check("v6.9", "invalidate-vs-free-under-read-lock", strategy="bounded",
                preemption_bound=1, max_executions=20000)
    assert res.violation is None, res.violation.message
    assert res.result.executions > 10


class PutWithoutPagesLock(V6_9):
    """What-if: the final put unlinks the root without tdp_mmu_pages_lock."""

    name = "v6.9+put-without-pages-lock"
    put_root_takes_pages_lock = False


def test_freeing_without_the_pages_lock_around_list_del_rcu_is_reported():
    res = check(PutWithoutPagesLock, "invalidate-vs-free-under-read-lock",
                max_executions=2000)
    assert res.violation is not None
    assert "tdp_mmu_roots" in res.violation.message, res.violation.message
    assert res.violation.function == "kvm_tdp_mmu_put_root", res.violation.message


def test_zap_of_an_invalid_root_asks_for_no_flush():
    """6.9's tdp_mmu_zap_leafs: SPTEs of an invalid root need no TLB flush."""
    from tdpmmu.kernel import write_lock, write_unlock
    w = world(V6_9, scenario([run_vcpu(0, "write 0x1")]))
    root = vcpu_root(w.kvm.vcpus[0])
    write_lock(w.kvm.mmu_lock)
    assert w.k.tdp_mmu_zap_leafs(w.kvm, root, 0, 16, False, False)
    write_unlock(w.kvm.mmu_lock)
    w2 = world(V6_9, scenario([run_vcpu(0, "write 0x1")]))
    r2 = vcpu_root(w2.kvm.vcpus[0])
    write_lock(w2.kvm.mmu_lock)
    w2.k.kvm_tdp_mmu_invalidate_all_roots(w2.kvm)
    assert not w2.k.tdp_mmu_zap_leafs(w2.kvm, r2, 0, 16, False, False)
    write_unlock(w2.kvm.mmu_lock)


def kvm_tdp_mmu_get_root(self, kvm, root):  # the name reports show
    """What-if: kvm_tdp_mmu_get_root with refcount_inc instead of
    refcount_inc_not_zero (a dying root could be revived)."""
    refcount_inc(root.tdp_mmu_root_count)
    return True


PlainIncrementGetRoot69 = what_if(V6_9, "plain-inc-get-root",
                                  kvm_tdp_mmu_get_root=kvm_tdp_mmu_get_root)
PlainIncrementGetRoot66 = what_if(V6_6, "plain-inc-get-root",
                                  kvm_tdp_mmu_get_root=kvm_tdp_mmu_get_root)


def test_plain_increment_get_root_is_reported_from_6_9():
    """The first version where the refcount what-if of v5.13's test is
    reachable: 6.9 puts a vCPU's root under the read lock
    (kvm_mmu_free_roots), so its last put of an invalidated root can run
    while the next memslot deletion's kvm_tdp_mmu_zap_invalidated_roots walks
    every root, taking a reference on each; a plain increment revives the
    root at 0 (refcount_t's "addition on 0; use-after-free")."""
    v = check(PlainIncrementGetRoot69, "obsolete-root-put-vs-next-invalidation").violation
    assert v is not None
    assert v.message.startswith("refcount_t: addition on 0; use-after-free"), v.message
    assert v.function == "kvm_tdp_mmu_get_root"
    assert check("v6.9", "obsolete-root-put-vs-next-invalidation",
                 max_executions=300).violation is None


def test_plain_increment_get_root_is_unreachable_on_6_6():
    """On 6.6 kvm_mmu_free_roots puts under the write lock, and the only
    read-locked walker that takes references on invalid roots is the zap of
    invalidated roots, one at a time under slots_lock: no get meets a 0, and
    the what-if verifies the same scenario completely."""
    res = check(PlainIncrementGetRoot66, "obsolete-root-put-vs-next-invalidation")
    assert res.violation is None, res.violation.message
    assert res.result.complete and res.result.executions > 1000
