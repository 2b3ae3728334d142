"""Linux 6.18 (``V6_18``): typed roots (``tdp_mmu_root_match``), the typed
invalidation and zap, ``kvm_tdp_mmu_alloc_root(vcpu, mirror)``, lockless aging
under RCU, and ``CONFIG_KVM_PROVE_MMU`` as a run option."""

from __future__ import annotations

import pytest
from kvm_testlib import SLOT0, do, roots, run_vcpu, scenario, vcpu_root, what_if, world

from tdpmmu.checker import UserError, check
from tdpmmu.engine import Finding
from tdpmmu.kernel import list_for_each_entry, refcount_read, write_lock, write_unlock
from tdpmmu.kvm.structs import INVALID_PAGE
from tdpmmu.kvm.v5_15 import kvm_gfn_range
from tdpmmu.kvm.v6_9 import V6_9
from tdpmmu.kvm.v6_18 import (
    KVM_ALL_ROOTS,
    KVM_DIRECT_ROOTS,
    KVM_INVALID_ROOTS,
    KVM_MIRROR_ROOTS,
    KVM_VALID_ROOTS,
    V6_18,
)
from tdpmmu.kvm.versions import BUILTIN
from tdpmmu.scenarios import scenario_names


def test_v6_18_is_built_in_a_v6_9():
    assert BUILTIN["v6.18"] is V6_18
    assert issubclass(V6_18, V6_9)


@pytest.mark.parametrize("name", scenario_names())
def test_v6_18_runs_every_builtin_scenario(name):
    """No finding on any built-in scenario (bounded here; the note has the runs)."""
    res = check("v6.18", name, max_executions=15)
    assert res.result.executions >= 1
    assert res.violation is None, res.violation.message


# ------------------------------------------------------------ root types
def test_root_match_sorts_roots_by_type_and_validity():
    w = world(V6_18, scenario([run_vcpu(0, "write 0x1")]))
    root = vcpu_root(w.kvm.vcpus[0])
    k = w.k
    assert k.tdp_mmu_root_match(root, KVM_VALID_ROOTS)
    assert k.tdp_mmu_root_match(root, KVM_DIRECT_ROOTS)
    assert k.tdp_mmu_root_match(root, KVM_ALL_ROOTS)
    assert not k.tdp_mmu_root_match(root, KVM_MIRROR_ROOTS)
    write_lock(w.kvm.mmu_lock)
    k.kvm_tdp_mmu_invalidate_roots(w.kvm, KVM_DIRECT_ROOTS)
    write_unlock(w.kvm.mmu_lock)
    # An invalid root is only visited by walks that ask for invalid roots.
    assert not k.tdp_mmu_root_match(root, KVM_VALID_ROOTS)
    assert k.tdp_mmu_root_match(root, KVM_DIRECT_ROOTS | KVM_INVALID_ROOTS)


def test_root_match_warns_on_types_without_a_valid_type():
    """``WARN_ON_ONCE(!(types & KVM_VALID_ROOTS))``: KVM_INVALID_ROOTS alone is
    a caller's bug (a bool passed for the old ``only_valid`` would be one)."""
    w = world(V6_18, scenario([run_vcpu(0, "write 0x1")]))
    with pytest.raises(Finding, match="tdp_mmu_root_match"):
        w.k.tdp_mmu_root_match(vcpu_root(w.kvm.vcpus[0]), KVM_INVALID_ROOTS)


def test_invalidate_roots_flags_the_matching_roots_for_the_zap():
    w = world(V6_18, scenario([run_vcpu(0, "write 0x1")]))
    root = vcpu_root(w.kvm.vcpus[0])
    write_lock(w.kvm.mmu_lock)
    w.k.kvm_tdp_mmu_invalidate_roots(w.kvm, KVM_MIRROR_ROOTS)  # no mirror roots here
    assert not root.role.invalid and not root.tdp_mmu_scheduled_root_to_zap
    w.k.kvm_tdp_mmu_invalidate_roots(w.kvm, KVM_DIRECT_ROOTS)
    write_unlock(w.kvm.mmu_lock)
    assert root.role.invalid and root.tdp_mmu_scheduled_root_to_zap


def test_invalidating_invalid_roots_is_a_warning():
    w = world(V6_18, scenario([run_vcpu(0, "write 0x1")]))
    write_lock(w.kvm.mmu_lock)
    with pytest.raises(Finding, match="kvm_tdp_mmu_invalidate_roots"):
        w.k.kvm_tdp_mmu_invalidate_roots(w.kvm, KVM_ALL_ROOTS)
    write_unlock(w.kvm.mmu_lock)


def _spy_zap_root_modes(w):
    seen = []
    orig = w.k.tdp_mmu_zap_root

    def spy(kvm, root, shared):
        seen.append((shared, kvm.mmu_lock.readers, kvm.mmu_lock.owner is not None))
        orig(kvm, root, shared)
    w.k.tdp_mmu_zap_root = spy
    return seen


def test_fast_zap_zaps_invalidated_roots_under_the_read_lock():
    """``kvm_mmu_zap_all_fast``: ``kvm_tdp_mmu_zap_invalidated_roots(kvm, true)``."""
    w = world(V6_18, scenario([run_vcpu(0, "write 0x1")]))
    root = vcpu_root(w.kvm.vcpus[0])
    seen = _spy_zap_root_modes(w)
    w.k.kvm_mmu_zap_all_fast(w.kvm)
    assert seen == [(True, 1, False)]
    # The zap put the TDP MMU's reference; the vCPU's is left.
    assert refcount_read(root.tdp_mmu_root_count) == 1


def test_teardown_zaps_invalidated_roots_under_the_write_lock():
    """35be969d1ef2: ``kvm_mmu_uninit_tdp_mmu`` zaps with ``shared`` false."""
    w = world(V6_18, scenario([run_vcpu(0, "write 0x1")]))
    do(w, "vcpu_unload", vcpu=0)
    seen = _spy_zap_root_modes(w)
    w.kvm.users_count = 0  # kvm_destroy_vm: the VM's last reference is gone
    w.k.kvm_mmu_uninit_tdp_mmu(w.kvm)
    assert seen == [(False, 0, True)]
    assert roots(w.kvm) == []


def test_zap_all_walks_direct_and_invalid_roots():
    """``kvm_tdp_mmu_zap_all`` (6.14): KVM_DIRECT_ROOTS | KVM_INVALID_ROOTS,
    so an invalidated root that is still listed is zapped too."""
    w = world(V6_18, scenario([run_vcpu(0, "write 0x1")]))
    old = vcpu_root(w.kvm.vcpus[0])
    write_lock(w.kvm.mmu_lock)
    w.k.kvm_tdp_mmu_invalidate_roots(w.kvm, KVM_DIRECT_ROOTS)
    write_unlock(w.kvm.mmu_lock)
    do(w, "vcpu_unload", vcpu=0)  # the invalid root keeps the TDP MMU's reference
    do(w, "vcpu_run", vcpu=0, guest=["write 0x2"])  # loads a new root
    zapped = []
    orig = w.k.tdp_mmu_zap_root
    w.k.tdp_mmu_zap_root = lambda kvm, root, shared: (zapped.append(root), orig(kvm, root,
                                                                               shared))
    write_lock(w.kvm.mmu_lock)
    w.k.kvm_tdp_mmu_zap_all(w.kvm)
    write_unlock(w.kvm.mmu_lock)
    listed = roots(w.kvm)
    assert old in listed and len(listed) == 2
    assert zapped == listed


# ------------------------------------------------------------ root loading
def test_alloc_root_loads_the_direct_root_and_returns_nothing():
    w = world(V6_18, scenario([run_vcpu(0, "write 0x1")]))
    vcpu = w.kvm.vcpus[0]
    do(w, "vcpu_unload", vcpu=0)
    assert w.k.kvm_tdp_mmu_alloc_root(vcpu, False) is None
    root = vcpu_root(vcpu)
    assert not root.role.is_mirror and vcpu.mmu.mirror_root_hpa == INVALID_PAGE
    assert refcount_read(root.tdp_mmu_root_count) == 2  # reused: the vCPU's + the TDP MMU's


def test_a_mirror_root_is_a_root_of_its_own_type():
    """``kvm_tdp_mmu_alloc_root(vcpu, true)`` -- only a TDX VM calls it; here
    called directly: the mirror root goes to ``mirror_root_hpa``, has
    ``role.is_mirror`` and is not found by a walk over direct roots."""
    w = world(V6_18, scenario([run_vcpu(0, "write 0x1")]))
    vcpu = w.kvm.vcpus[0]
    direct = vcpu_root(vcpu)
    w.k.kvm_tdp_mmu_alloc_root(vcpu, True)
    mirror = w.kvm.phys[vcpu.mmu.mirror_root_hpa >> 12]
    assert mirror is not direct and mirror.role.is_mirror
    assert vcpu_root(vcpu) is direct
    write_lock(w.kvm.mmu_lock)
    assert list(w.k.for_each_valid_tdp_mmu_root(w.kvm, 0)) == [mirror, direct]
    assert [r for r in w.k._for_each_tdp_mmu_root(w.kvm, 0, KVM_DIRECT_ROOTS)] == [direct]
    write_unlock(w.kvm.mmu_lock)


def test_a_vm_without_tdx_has_no_mirror_root():
    w = world(V6_18, scenario([run_vcpu(0, "write 0x1"), run_vcpu(1, "read 0x2")], vcpus=2))
    assert all(not r.role.is_mirror for r in list_for_each_entry(w.kvm.arch.tdp_mmu_roots))
    assert all(v.mmu.mirror_root_hpa == INVALID_PAGE for v in w.kvm.vcpus)


def test_two_vcpus_loading_roots_at_once_share_one_root():
    res = check("v6.18", "two-vcpus-load-root", strategy="bounded", preemption_bound=2,
                max_executions=20000)
    assert res.violation is None, res.violation.message
    assert res.result.executions > 100


# ------------------------------------------------------------ aging
def _gfn_range(w, start, end):
    slot = w.kvm.memslots[0].value.slots[0]
    return kvm_gfn_range(slot=slot, start=start, end=end, pte=None, may_block=False)


def test_aging_takes_no_mmu_lock_and_clears_the_accessed_bit():
    """6.15: the notifier ages without ``mmu_lock``; the walk holds RCU."""
    w = world(V6_18, scenario([run_vcpu(0, "write 0x1")]))
    seen = []
    orig = w.k.kvm_tdp_mmu_age_spte

    def spy(kvm, it):
        seen.append((kvm.mmu_lock.readers, kvm.mmu_lock.owner))
        orig(kvm, it)
    w.k.kvm_tdp_mmu_age_spte = spy
    assert w.k.kvm_mmu_notifier_clear_flush_young(w.kvm, SLOT0["hva"], SLOT0["hva"] + 4)
    assert seen == [(0, None)]
    assert not w.k.kvm_mmu_notifier_test_young(w.kvm, SLOT0["hva"] + 1)


def test_aging_skips_invalid_roots():
    """526e609f0567: only valid roots are aged."""
    w = world(V6_18, scenario([run_vcpu(0, "write 0x1")]))
    write_lock(w.kvm.mmu_lock)
    w.k.kvm_tdp_mmu_invalidate_roots(w.kvm, KVM_DIRECT_ROOTS)
    write_unlock(w.kvm.mmu_lock)
    assert not w.k.kvm_tdp_mmu_test_age_gfn(w.kvm, _gfn_range(w, 0, 4))
    w2 = world(V6_18, scenario([run_vcpu(0, "write 0x1")]))
    assert w2.k.kvm_tdp_mmu_test_age_gfn(w2.kvm, _gfn_range(w2, 0, 4))


def test_aging_racing_the_final_put_verifies():
    res = check("v6.18", "age-vs-root-free", strategy="bounded", preemption_bound=1,
                max_executions=20000)
    assert res.violation is None, res.violation.message
    assert res.result.executions > 10


def _put_root_free_at_once(self, kvm, root):
    """What-if: the final put frees the root at once, not after a grace period."""
    from tdpmmu.kernel import list_del_rcu, refcount_dec_and_test, spin_lock, spin_unlock
    if not refcount_dec_and_test(root.tdp_mmu_root_count):
        return
    spin_lock(kvm.arch.tdp_mmu_pages_lock)
    list_del_rcu(root.link)
    spin_unlock(kvm.arch.tdp_mmu_pages_lock)
    self.tdp_mmu_free_sp(kvm, root)


FreeAtOnce618 = what_if(V6_18, "free-at-once", kvm_tdp_mmu_put_root=_put_root_free_at_once)
FreeAtOnce69 = what_if(V6_9, "free-at-once", kvm_tdp_mmu_put_root=_put_root_free_at_once)


def test_a_root_freed_without_a_grace_period_is_reported_only_with_lockless_aging():
    """6.15's aging walks the roots under RCU alone: freeing a root without
    waiting for a grace period is a use-after-free in that walk.  On 6.9, whose
    aging holds ``mmu_lock``, the same change meets no walker here (no
    interleaving with one preemption; a full dpor search verifies it too)."""
    res = check(FreeAtOnce618, "age-vs-root-free", strategy="bounded", preemption_bound=1,
                max_executions=5000)
    assert res.violation is not None
    assert "use-after-free" in res.violation.message, res.violation.message
    assert res.violation.function == "for_each_tdp_mmu_root_rcu", res.violation.message
    res9 = check(FreeAtOnce69, "age-vs-root-free", strategy="bounded", preemption_bound=1,
                 max_executions=5000)
    assert res9.violation is None, res9.violation.message
    assert res9.result.executions > 1000


# ------------------------------------------------------------ change_pte
def test_the_mm_calls_no_change_pte_notifier_from_6_10():
    for cls, calls in ((V6_9, 1), (V6_18, 0)):
        w = world(cls, scenario([run_vcpu(0, "write 0x1")]))
        called = []
        orig = w.k.kvm_mmu_notifier_change_pte
        w.k.kvm_mmu_notifier_change_pte = lambda *a, _o=orig, _c=called: (_c.append(a), _o(*a))
        do(w, "change_pte", hva=SLOT0["hva"] + 1)
        assert len(called) == calls, cls.name


# ------------------------------------------------------- CONFIG_KVM_PROVE_MMU
class DoubleYield(V6_18):
    """What-if: a walk that, after yielding, asks once more whether to yield
    before it moves the iterator on (here: the yield itself yields twice)."""

    name = "v6.18+double-yield"

    def tdp_mmu_iter_cond_resched(self, kvm, it, flush=False, shared=False):
        if super().tdp_mmu_iter_cond_resched(kvm, it, flush, shared):
            super().tdp_mmu_iter_cond_resched(kvm, it, False, shared)
            return True
        return False


def test_prove_mmu_is_off_by_default_as_in_the_kernel():
    assert V6_18.CONFIG_KVM_PROVE_MMU is False
    assert check("v6.18", "seed-bug", max_executions=1).model.knobs == {}


def test_a_second_yield_without_progress_is_caught_only_with_prove_mmu():
    """6.13's ``KVM_MMU_WARN_ON(iter->yielded)``: compiled out by default (the
    second yield is harmless then), a WARN with CONFIG_KVM_PROVE_MMU=y."""
    off = check(DoubleYield, "seed-bug", max_executions=300)
    assert off.violation is None, off.violation.message
    on = check(DoubleYield, "seed-bug", max_executions=300, knobs={"KVM_PROVE_MMU": "y"})
    assert on.violation is not None
    assert on.violation.kind == "WARN", on.violation.message
    assert on.violation.function == "tdp_mmu_iter_cond_resched", on.violation.message


def test_prove_mmu_checks_the_tdp_mmu_pages_at_teardown():
    """6.14+: ``KVM_MMU_WARN_ON(tdp_mmu_pages)`` in ``kvm_mmu_uninit_tdp_mmu``
    only with the option (a page left on the list is the finding)."""
    for prove, raises in ((False, False), (True, True)):
        w = world(V6_18, scenario([run_vcpu(0, "write 0x1")]))
        w.k.CONFIG_KVM_PROVE_MMU = prove
        # What-if: a fault links a page table for accounting and, having lost
        # its race, frees it without unaccounting it (it stays on the list).
        stray = w.k.alloc_tdp_mmu_page(w.kvm.vcpus[0], 0, 1)
        stray.name, stray.root = "stray", vcpu_root(w.kvm.vcpus[0])
        w.k.tdp_mmu_link_page(w.kvm, stray, False, False)
        do(w, "vcpu_unload", vcpu=0)
        w.kvm.users_count = 0
        if raises:
            with pytest.raises(Finding, match="kvm_mmu_uninit_tdp_mmu"):
                w.k.kvm_mmu_uninit_tdp_mmu(w.kvm)
        else:
            w.k.kvm_mmu_uninit_tdp_mmu(w.kvm)


def test_prove_mmu_is_rejected_on_versions_without_it():
    with pytest.raises(UserError, match="no CONFIG_KVM_PROVE_MMU"):
        check("v6.4", "seed-bug", max_executions=1, knobs={"KVM_PROVE_MMU": "y"})
    assert check("v6.6", "seed-bug", max_executions=1,
                 knobs={"KVM_PROVE_MMU": "y"}).violation is None


# ------------------------------------------------------------ [vm] type
def _typed_scenario(vm_type):
    from tdpmmu.scenarios.format import parse_scenario
    return parse_scenario({"name": "typed", "vm": {"type": vm_type, "tdp_mmu": 1},
                           "thread": [{"name": "host", "actions": [{"op": "zap_all"}]}]},
                          "<typed>")


def test_a_tdx_vm_is_refused_with_the_reason():
    """6.18 has KVM_X86_TDX_VM but the model leaves TDX out; 6.9 has no such type."""
    with pytest.raises(UserError, match="v6.18 is modelled without TDX"):
        check("v6.18", _typed_scenario("tdx"), max_executions=1)
    with pytest.raises(UserError, match="v6.9 has no KVM_X86_TDX_VM"):
        check("v6.9", _typed_scenario("tdx"), max_executions=1)
    assert check("v6.18", _typed_scenario("default"), max_executions=1).violation is None


def test_an_unknown_vm_type_is_a_scenario_error():
    from tdpmmu.scenarios.format import ScenarioError
    with pytest.raises(ScenarioError, match=r"\[vm\] type"):
        _typed_scenario("sev")


# ------------------------------------------- TLB entries a vCPU cannot use
def test_a_vcpu_on_an_invalid_root_or_mid_load_has_no_usable_tlb_entries():
    """properties.tlb.tlb_unusable: under 6.9's flush contract a vCPU whose root
    is invalid flushes before its next guest access (it was sent
    KVM_REQ_MMU_FREE_OBSOLETE_ROOTS); any vCPU between installing a new root
    and the load's flush holds only the old root's entries."""
    from tdpmmu.properties.tlb import tlb_unusable
    w = world(V6_18, scenario([run_vcpu(0, "write 0x1")]))
    v = w.kvm.vcpus[0]
    assert v.tlb.entries and not tlb_unusable(w.kvm, v, V6_18.tlb_flush_contract)
    v.tlb_flush_after_load_pending = True
    assert tlb_unusable(w.kvm, v, "before-unlock")
    v.tlb_flush_after_load_pending = False
    write_lock(w.kvm.mmu_lock)
    w.k.kvm_tdp_mmu_invalidate_roots(w.kvm, KVM_DIRECT_ROOTS)
    write_unlock(w.kvm.mmu_lock)
    assert tlb_unusable(w.kvm, v, "before-unlock-valid-root")
    assert not tlb_unusable(w.kvm, v, "before-unlock")  # 5.10-5.17: the zapper flushes


@pytest.mark.parametrize("kernel", ["v6.9", "v6.18"])
def test_no_tlb_report_for_a_vcpu_that_flushes_before_it_runs(kernel):
    """pct (seed 0) reported, on both, a notifier returning while the vCPU's TLB
    still held a translation of its invalidated root (no flush owed from 6.9)
    -- a false report: the vCPU frees that root and flushes at load first."""
    res = check(kernel, "memslot-vs-fault-and-notifier", strategy="pct", max_executions=50)
    assert res.violation is None, res.violation.message
