"""The vCPU's root role as changing state: nested entry/exit with nested EPT
(root_mmu and guest_mmu, ``prev_roots``, ``role.direct``), INVEPT,
KVM_SET_CPUID and the ``nx_huge_pages`` parameter, through the scenario
actions on setup-style worlds."""

from __future__ import annotations

from typing import Any

import pytest
from kvm_testlib import do, roots, run_vcpu, scenario, world

from tdpmmu.kernel import object_is_freed
from tdpmmu.kvm.spte import PAGE_SHIFT
from tdpmmu.kvm.structs import INVALID_PAGE
from tdpmmu.kvm.v5_13 import role_invalid
from tdpmmu.kvm.versions import V5_10, V5_13, V5_15, V5_17, V5_18, V6_1, V6_9

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
