"""The vCPU's root role as changing state: nested entry/exit with nested EPT
(root_mmu and guest_mmu, ``prev_roots``, ``role.direct``), INVEPT,
KVM_SET_CPUID and the ``nx_huge_pages`` parameter, through the scenario
actions on setup-style worlds."""

from __future__ import annotations

from typing import Any

import pytest
from kvm_testlib import do, roots, run_vcpu, scenario, world

from tdpmmu.checker import check
from tdpmmu.kernel import WARN_ON, object_is_freed
from tdpmmu.kvm.mmu import KVM_MMU_ROOTS_ALL
from tdpmmu.kvm.spte import PAGE_SHIFT
from tdpmmu.kvm.structs import INVALID_PAGE
from tdpmmu.kvm.v5_13 import role_invalid
from tdpmmu.kvm.versions import V5_10, V5_11, V5_13, V5_15, V5_17, V5_18, V6_1, V6_9

ALL = [V5_10, V5_15, V5_17, V5_18, V6_1, V6_9]


def page(kvm: Any, hpa: int) -> Any:
    return kvm.phys[hpa >> PAGE_SHIFT]


def cached(mmu: Any) -> list[int]:
    return [r.hpa for r in mmu.prev_roots if r.hpa != INVALID_PAGE]


@pytest.mark.parametrize("kernel", ALL, ids=lambda k: k.name)
def test_nested_entry_loads_a_shadow_root_and_keeps_l1s(kernel):
    w = world(kernel, scenario([run_vcpu(0, "write 0x1")]))
    v = w.kvm.vcpus[0]
    l1_root = v.root_mmu.root_hpa
    # vmlaunch then a vmexit: the program must return to L1.
    do(w, "vcpu_run", vcpu=0, guest=["vmlaunch 0x2", "vmexit"])
    assert v.mmu is v.root_mmu and v.guest_mode == 0
    assert v.root_mmu.root_hpa == l1_root, "L1's root stays in root_mmu"
    sp = page(w.kvm, v.guest_mmu.root_hpa)
    assert not sp.tdp_mmu_page and sp.role.direct == 0 and sp.role.guest_mode == 1
    assert sp.gfn == 0x2 and v.guest_mmu.root_pgd == 0x2 << PAGE_SHIFT
    assert sp.root_count == 1
    assert page(w.kvm, l1_root).role.direct == 1


@pytest.mark.parametrize("kernel", ALL, ids=lambda k: k.name)
def test_reentry_reuses_the_cached_shadow_root(kernel):
    w = world(kernel, scenario([run_vcpu(0, "vmlaunch 0x2", "vmexit")]))
    v = w.kvm.vcpus[0]
    first = v.guest_mmu.root_hpa
    do(w, "vcpu_run", vcpu=0, guest=["vmlaunch 0x2", "vmexit"])
    assert v.guest_mmu.root_hpa == first
    assert page(w.kvm, first).root_count == 1, "reused, not counted twice"


@pytest.mark.parametrize("kernel", ALL, ids=lambda k: k.name)
def test_another_eptp_pushes_the_root_into_prev_roots(kernel):
    w = world(kernel, scenario([run_vcpu(0, "vmlaunch 0x2", "vmexit")]))
    v = w.kvm.vcpus[0]
    first = v.guest_mmu.root_hpa
    do(w, "vcpu_run", vcpu=0, guest=["vmlaunch 0x3", "vmexit"])
    second = v.guest_mmu.root_hpa
    assert second != first and page(w.kvm, second).gfn == 0x3
    assert cached(v.guest_mmu) == [first]
    # Back to the first EPTP: found in the cache (fast_pgd_switch), the
    # second becomes the most recently used cached root.
    do(w, "vcpu_run", vcpu=0, guest=["vmlaunch 0x2", "vmexit"])
    assert v.guest_mmu.root_hpa == first
    assert second in cached(v.guest_mmu)
    assert page(w.kvm, first).root_count == 1 and page(w.kvm, second).root_count == 1


@pytest.mark.parametrize("kernel", ALL, ids=lambda k: k.name)
def test_invept_frees_every_guest_mmu_root_and_only_those(kernel):
    w = world(kernel, scenario([run_vcpu(0, "write 0x1", "vmlaunch 0x2", "vmexit",
                                         "vmlaunch 0x3", "vmexit")]))
    v = w.kvm.vcpus[0]
    shadow = [page(w.kvm, h) for h in [v.guest_mmu.root_hpa] + cached(v.guest_mmu)]
    assert len(shadow) == 2
    l1_root = v.root_mmu.root_hpa
    do(w, "vcpu_run", vcpu=0, guest=["invept"])
    assert v.guest_mmu.root_hpa == INVALID_PAGE and cached(v.guest_mmu) == []
    assert all(sp.root_count == 0 for sp in shadow)
    assert v.root_mmu.root_hpa == l1_root


@pytest.mark.parametrize("kernel", ALL, ids=lambda k: k.name)
def test_unload_frees_both_mmus_current_and_cached(kernel):
    w = world(kernel, scenario([run_vcpu(0, "write 0x1", "vmlaunch 0x2", "vmexit",
                                         "vmlaunch 0x3", "vmexit")]))
    v = w.kvm.vcpus[0]
    do(w, "vcpu_unload", vcpu=0)
    for mmu in (v.root_mmu, v.guest_mmu):
        assert mmu.root_hpa == INVALID_PAGE and cached(mmu) == []


def test_v6_9_frees_guest_mmu_under_the_write_lock_root_mmu_under_the_read_lock():
    """6.9's kvm_mmu_free_roots: ``is_tdp_mmu = tdp_mmu_enabled && root_role.direct``."""
    modes = []

    class Spy(V6_9):
        def mmu_free_root_page(self, kvm, mmu, invalid_list=None):
            modes.append(kvm.mmu_lock.owner is not None)  # held for write?
            super().mmu_free_root_page(kvm, mmu, invalid_list)

    w = world(Spy, scenario([run_vcpu(0, "write 0x1", "vmlaunch 0x2", "vmexit")]))
    v = w.kvm.vcpus[0]
    modes.clear()
    Spy().kvm_mmu_free_roots(v, v.root_mmu)
    Spy().kvm_mmu_free_roots(v, v.guest_mmu)
    # One call per slot asked for (current and three cached) of each MMU.
    assert modes == [False] * 4 + [True] * 4


@pytest.mark.parametrize("kernel", [V5_10, V5_18], ids=lambda k: k.name)
def test_zap_all_fast_obsoletes_the_shadow_root_and_the_vcpu_frees_it(kernel):
    w = world(kernel, scenario([run_vcpu(0, "write 0x1", "vmlaunch 0x2", "vmexit")],
                               memslots=[{"id": 0, "base_gfn": 0, "npages": 8, "hva": 0x100},
                                         {"id": 1, "base_gfn": 8, "npages": 4,
                                          "hva": 0x200}]))
    v = w.kvm.vcpus[0]
    sp = page(w.kvm, v.guest_mmu.root_hpa)
    do(w, "memslot_delete", slot=1)
    assert sp.role.invalid == 1 and sp.root_count == 1, "in use: invalid, not freed"
    assert not object_is_freed(sp)
    do(w, "vcpu_run", vcpu=0, guest=["read 0x1"])  # the request frees it
    assert v.guest_mmu.root_hpa == INVALID_PAGE
    assert object_is_freed(sp)


@pytest.mark.parametrize("kernel", ALL, ids=lambda k: k.name)
def test_set_nx_huge_pages_change_zaps_fast(kernel):
    w = world(kernel, scenario([run_vcpu(0, "write 0x1")]))
    gen = w.kvm.arch.mmu_valid_gen
    (root,) = roots(w.kvm)
    do(w, "set_nx_huge_pages", value=False)  # no change: nothing
    assert w.kvm.arch.mmu_valid_gen == gen
    do(w, "set_nx_huge_pages", value=True)
    assert w.kvm.nx_huge_pages is True
    assert w.kvm.arch.mmu_valid_gen != gen
    if issubclass(kernel, V5_13):  # fast invalidation marks the root invalid
        assert role_invalid(root) or object_is_freed(root)
    else:  # 5.10: the root is zapped and every vCPU asked to reload
        assert w.kvm.vcpus[0].requests.value


@pytest.mark.parametrize("kernel", [V5_10, V5_15], ids=lambda k: k.name)
def test_set_cpuid_after_run_resets_the_context_up_to_5_15(kernel):
    w = world(kernel, scenario([{"op": "set_cpuid", "vcpu": 0, "cpuid": 1},
                                run_vcpu(0, "write 0x1", "vmlaunch 0x2", "vmexit")]))
    v = w.kvm.vcpus[0]
    do(w, "set_cpuid", vcpu=0, cpuid=2)
    assert v.cpuid == 2
    assert v.root_mmu.root_hpa == INVALID_PAGE and v.guest_mmu.root_hpa == INVALID_PAGE


@pytest.mark.parametrize("kernel", [V5_17, V6_1, V6_9], ids=lambda k: k.name)
def test_identical_set_cpuid_after_run_does_nothing_from_5_17(kernel):
    w = world(kernel, scenario([{"op": "set_cpuid", "vcpu": 0, "cpuid": 1},
                                run_vcpu(0, "write 0x1")]))
    v = w.kvm.vcpus[0]
    root = v.root_mmu.root_hpa
    do(w, "set_cpuid", vcpu=0, cpuid=1)
    assert v.root_mmu.root_hpa == root and not w.kvm.vm_bugged


@pytest.mark.parametrize("kernel", [V5_17, V6_1, V6_9], ids=lambda k: k.name)
def test_set_cpuid_before_run_resets_from_5_17_too(kernel):
    w = world(kernel, scenario([{"op": "set_cpuid", "vcpu": 0, "cpuid": 1}]))
    v = w.kvm.vcpus[0]
    assert v.cpuid == 1 and not w.kvm.vm_bugged
    if kernel is V6_1 or kernel is V6_9:
        assert v.root_mmu.mmu_role.invalid == 0, "kvm_init_mmu recomputed the role"


# ---------------------------------------------------------------- scenarios
def test_nx_huge_pages_scenario_reaches_the_seed_bug_on_v5_10():
    """set_nx_huge_pages -> kvm_mmu_zap_all_fast -> kvm_tdp_mmu_zap_all: the
    5.10 walk's put without a free (fixed by a889ea54b3da in 5.11)."""
    res = check("v5.10", "nx-huge-pages-vs-fault", max_executions=500)
    assert res.violation is not None and res.violation.kind == "BUG"
    assert "kvm_mmu_get_root" in res.violation.message
    assert check("v5.11", "nx-huge-pages-vs-fault", max_executions=300).violation is None


class _Counting:
    calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        type(self).calls[name] = type(self).calls.get(name, 0) + 1


def counting(base: type) -> type:
    class Counting(_Counting, base):
        calls: dict[str, int] = {}

        def kvm_mmu_reset_context(self, vcpu):
            self._count("reset")
            super().kvm_mmu_reset_context(vcpu)

        def handle_invept(self, vcpu):
            self._count("invept")
            super().handle_invept(vcpu)

        def mmu_alloc_shadow_roots(self, vcpu):
            self._count("shadow_alloc")
            return super().mmu_alloc_shadow_roots(vcpu)

    return Counting


@pytest.mark.parametrize(("kernel", "resets"), [(V5_10, True), (V5_15, True), (V5_17, False),
                                                (V6_9, False)], ids=lambda k: getattr(k, "name", k))
def test_set_cpuid_scenario_verifies_and_resets_only_where_the_version_does(kernel, resets):
    k = counting(kernel)
    res = check(k, "set-cpuid-vs-invalidate")
    assert res.violation is None and res.result.complete
    # The setup's set_cpuid (before KVM_RUN) resets on every version; the
    # thread's identical one after KVM_RUN only up to 5.15.
    assert (k.calls["reset"] > res.result.executions) is resets


@pytest.mark.parametrize("kernel", [V5_10, V5_18, V6_9], ids=lambda k: k.name)
def test_nested_scenario_loads_shadow_roots_and_inepts(kernel):
    k = counting(kernel)
    res = check(k, "nested-roots-vs-memslot-delete", max_executions=60)
    assert res.violation is None
    assert k.calls["invept"] >= res.result.executions and k.calls["shadow_alloc"] > 0


def test_an_unload_that_forgets_guest_mmu_leaks_the_shadow_root():
    class ForgetsGuestMmu(V5_10):
        def kvm_mmu_unload(self, vcpu):
            self.kvm_mmu_free_roots(vcpu, vcpu.root_mmu)

    # L1 leaves a shadow root cached in guest_mmu (no INVEPT), then the VM
    # goes away: only kvm_mmu_unload's second free would drop it.
    scen = scenario([run_vcpu(0, "write 0x1", "vmlaunch 0x2", "vmexit")],
                    threads=[{"name": "vcpu0", "actions": [run_vcpu(0, "read 0x1")]}])
    assert check(V5_10, scen).violation is None
    res = check(ForgetsGuestMmu, scen)
    assert res.violation is not None and "leak" in res.violation.message, res.violation


class _UnloadForgetsGuestMmu(V5_11):
    """kvm_mmu_unload without its free of guest_mmu (a mutation survivor)."""

    name = "v5.11+unload-forgets-guest-mmu"

    def kvm_mmu_unload(self, vcpu):
        self.kvm_mmu_free_roots(vcpu, vcpu.root_mmu, KVM_MMU_ROOTS_ALL)
        WARN_ON(vcpu.root_mmu.root_hpa != INVALID_PAGE)


class _UnloadWarnsBeforeFreeingGuestMmu(V5_11):
    """kvm_mmu_unload checks guest_mmu's root before freeing it."""

    name = "v5.11+unload-warns-early"

    def kvm_mmu_unload(self, vcpu):
        self.kvm_mmu_free_roots(vcpu, vcpu.root_mmu, KVM_MMU_ROOTS_ALL)
        WARN_ON(vcpu.root_mmu.root_hpa != INVALID_PAGE)
        WARN_ON(vcpu.guest_mmu.root_hpa != INVALID_PAGE)
        self.kvm_mmu_free_roots(vcpu, vcpu.guest_mmu, KVM_MMU_ROOTS_ALL)


@pytest.mark.parametrize("kernel", [V5_10, V5_18, V6_9], ids=lambda k: k.name)
def test_nested_unload_scenario_verifies(kernel):
    res = check(kernel, "nested-roots-vs-unload")
    assert res.violation is None and res.result.complete


@pytest.mark.parametrize(("variant", "kind", "text"), [
    (_UnloadForgetsGuestMmu, "kmemleak", "leak"),
    (_UnloadWarnsBeforeFreeingGuestMmu, "WARN", "kvm_mmu_unload"),
])
def test_nested_unload_scenario_catches_an_unload_that_mishandles_guest_mmu(variant, kind, text):
    """The built-in scenario leaves guest_mmu's shadow roots cached at the
    unload (no INVEPT before it), so both survivors of the mutation run die."""
    v = check(variant, "nested-roots-vs-unload").violation
    assert v is not None and v.kind == kind and text in v.message, v and (v.kind, v.message)


def test_v6_9_freeing_guest_mmu_under_the_read_lock_is_reported():
    """6.9's mmu_free_root_page asserts the write lock for a legacy (shadow)
    root's put (lockdep_assert_held_write)."""
    class ReadLocksEverything(V6_9):
        def kvm_mmu_free_roots(self, vcpu, mmu, roots_to_free=KVM_MMU_ROOTS_ALL):
            direct = mmu.direct_map
            mmu.direct_map = True  # is_tdp_mmu without the root_role.direct test
            try:
                super().kvm_mmu_free_roots(vcpu, mmu, roots_to_free)
            finally:
                mmu.direct_map = direct

    res = check(ReadLocksEverything, "nested-roots-vs-memslot-delete", max_executions=200)
    assert res.violation is not None and res.violation.kind == "WARN"
    assert "mmu_free_root_page" in res.violation.message
