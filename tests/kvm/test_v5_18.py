"""Linux 5.18 (``V5_18``): invalid and defunct roots zapped by a work queue."""

from __future__ import annotations

from typing import Any

import pytest

from tdpmmu.checker import build_model, check, resolve_scenario
from tdpmmu.kernel import refcount_dec_and_test, refcount_inc
from tdpmmu.kvm.v5_17 import V5_17
from tdpmmu.kvm.v5_18 import V5_18
from tdpmmu.kvm.versions import BUILTIN
from tdpmmu.scenarios import scenario_names

# A deleted slot's pages still mapped: reported when the deletion returns
# (memslot-removed) or, at the latest, when the host's munmap notifier returns.
NOTIFIER_PROPS = ("memslot-removed", "mmu-notifier", "invalidation-complete")


def test_v5_18_is_built_in_a_v5_17_and_runs_a_kernel_worker():
    assert BUILTIN["v5.18"] is V5_18
    assert issubclass(V5_18, V5_17)
    model = build_model(V5_18, resolve_scenario("teardown"))
    assert [n for n, _ in model.threads if n.startswith("kworker")] == ["kworker/u:0"]


@pytest.mark.parametrize("name", scenario_names())
def test_v5_18_runs_every_builtin_scenario(name):
    """No finding on any built-in scenario (bounded here; the note has the runs)."""
    res = check("v5.18", name, max_executions=15)
    assert res.result.executions >= 1
    assert res.violation is None, res.violation.message


def test_memslot_zap_goes_through_the_work_queue_and_is_waited_for():
    """22b94c4b63eb: the memslot update queues each invalid root's zap and
    flushes the queue before it returns, so the deleted slot's pages are
    unmapped when userspace frees them."""
    res = check("v5.18", "memslot-delete-then-munmap")
    assert res.result.complete and res.violation is None


class NoFlushOfZapWork(V5_18):
    """What-if: kvm_tdp_mmu_zap_invalidated_roots returns without waiting for
    the queued zaps."""

    name = "v5.18+no-flush"

    def kvm_tdp_mmu_zap_invalidated_roots(self, kvm: Any) -> None:
        pass


def test_not_waiting_for_the_zap_work_leaves_freed_pages_mapped():
    """The worker is a model thread: the checker runs it after the munmap, when
    the deleted slot's pages are already back with the host.  The broken
    promise itself is reported first, when kvm_mmu_zap_all_fast returns
    (invalidated-roots-zapped); without that property (a class that does not
    declare the promise) the later consequence is what is reported."""
    res = check(NoFlushOfZapWork, "memslot-delete-then-munmap")
    assert res.violation is not None
    assert res.violation.message.startswith("invalidated-roots-zapped: after "
                                            "kvm_mmu_zap_all_fast returned")

    class Undeclared(NoFlushOfZapWork):
        promises_invalidated_roots_zapped = False

    res = check(Undeclared, "memslot-delete-then-munmap")
    assert res.violation is not None
    assert res.violation.message.startswith(NOTIFIER_PROPS)


class DefunctWithoutReference(V5_18):
    """What-if: the defunct path queues the zap without setting the count back
    to 1 (so the worker's put has no reference to drop)."""

    name = "v5.18+defunct-no-ref"

    def kvm_tdp_mmu_put_root(self, kvm: Any, root: Any, shared: bool) -> None:
        self.kvm_lockdep_assert_mmu_lock_held(kvm, shared)
        if not refcount_dec_and_test(root.tdp_mmu_root_count):
            return
        if not self.kvm_tdp_root_mark_invalid(root):
            self.tdp_mmu_schedule_zap_root(kvm, root)
            return
        super().kvm_tdp_mmu_put_root(kvm, root, shared)


def test_a_vcpus_last_put_makes_the_root_defunct_and_the_worker_zaps_it():
    """vcpu0's kvm_mmu_unload drops the last reference to its valid root: the
    root becomes defunct and its zap is queued; the kernel worker then zaps
    it (WARN_ON_ONCE on a zero count in tdp_mmu_zap_root, or refcount_t's
    underflow in the put, if the defunct path kept no reference)."""
    res = check(DefunctWithoutReference, "destroy-vm-with-queued-zap", max_executions=200)
    assert res.violation is not None
    assert res.violation.message.startswith("WARNING: CPU: kworker/u:0"), res.violation.message
    assert "tdp_mmu_zap_root" in res.violation.message


class PlainIncrementGetRoot(V5_18):
    """What-if: kvm_tdp_mmu_get_root with refcount_inc instead of
    refcount_inc_not_zero."""

    name = "v5.18+plain-inc-get-root"

    def kvm_tdp_mmu_get_root(self, kvm: Any, root: Any) -> bool:
        refcount_inc(root.tdp_mmu_root_count)
        return True


def test_plain_increment_get_root_is_unreachable_on_v5_18():
    """A get can see a count of 0 only if it races the put that drops it
    there, and on v5.18 (as on v5.13-v5.17) gets and puts that run at once
    all hold mmu_lock for read: the read-locked root walkers (dirty logging,
    zap_collapsible) run under kvm->slots_lock, so one at a time; the zap
    worker takes no reference with a get (it owns one) and its put is of an
    invalid root, which the valid-only walkers skip before their get; the
    defunct path's count goes 1 -> 0 -> 1 inside one put, with no other
    read-locked walker that could get in between.  Every other get
    (kvm_tdp_mmu_get_vcpu_root_hpa, the notifier and zap-all walks,
    invalidate_all_roots) holds the lock for write.  So the what-if verifies
    completely where a read-locked walk's put is the root's last (it makes
    the root defunct) and the worker zaps and frees it.  None of v5.13-v5.18
    lets it happen; the first candidate is a version that looks roots up
    under the read lock (6.9, 576a15de8d29), not modelled yet."""
    res = check(PlainIncrementGetRoot, "dirty-log-walk-vs-unload")
    assert res.result.complete and res.violation is None


def test_defunct_path_is_taken_in_the_read_locked_walk_scenario():
    """The scenario the what-if above verifies does reach the defunct path
    under the read lock: without the count reset it is reported."""
    res = check(DefunctWithoutReference, "dirty-log-walk-vs-unload")
    assert res.violation is not None
    assert "tdp_mmu_zap_root" in res.violation.message
