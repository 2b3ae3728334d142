"""Direct properties of vCPU roots and guest accesses (issue 9, gap 6)."""

from __future__ import annotations

from typing import Any

from props_lib import SLOT0, SMRAM, messages, run, scen

from tdpmmu.checker import check
from tdpmmu.kernel import spin_lock, spin_unlock
from tdpmmu.kvm import shared
from tdpmmu.kvm.versions import V5_11


class _ReuseWithoutGet(V5_11):
    """get_tdp_mmu_vcpu_root reuses a root without taking a reference for the vCPU."""

    name = "v5.11+reuse-without-get"

    def get_tdp_mmu_vcpu_root(self, vcpu: Any) -> Any:
        kvm = vcpu.kvm
        role = self.page_role_for_level(vcpu, vcpu.mmu.shadow_root_level)
        spin_lock(kvm.mmu_lock)
        for root in self.for_each_tdp_mmu_root(kvm):
            if root.role.word == role.word:
                spin_unlock(kvm.mmu_lock)
                return root
        root = self.alloc_tdp_mmu_page(vcpu, 0, vcpu.mmu.shadow_root_level)
        root.name = f"r{kvm.nr_roots_made}"
        kvm.nr_roots_made += 1
        root.root = root
        root.root_count = 1
        shared.note(f"new root {root.name}")
        from tdpmmu.kernel import list_add
        list_add(root.link, kvm.arch.tdp_mmu_roots)
        spin_unlock(kvm.mmu_lock)
        return root


class _SlotOfAddressSpace0(V5_11):
    """The fault path looks the gfn up in address space 0 even in SMM."""

    name = "v5.11+as0-slots"

    def kvm_vcpu_gfn_to_memslot(self, vcpu: Any, gfn: int) -> Any:
        return self._gfn_to_memslot(self._kvm_memslots(vcpu.kvm, 0), gfn)


def test_a_vcpu_root_freed_under_the_vcpu_is_reported_when_it_happens():
    s = scen({"vcpu0": [{"op": "vcpu_unload", "vcpu": 0}], "vcpu1": [run(1, "read 0x1")]},
             [run(0, "write 0x1"), run(1, "write 0x2")], vcpus=2)
    v = check(_ReuseWithoutGet, s).violation
    assert v is not None
    assert any(m.startswith("vcpu-root-live: vcpu1's root_hpa names r0, a freed page") for m in
               messages(v)), messages(v)


def test_a_guest_access_reaching_another_address_spaces_frame_is_reported():
    s = scen({"vcpu0": [run(0, "smi", "write 0x1")]}, memslots=[SLOT0, SMRAM])
    v = check(_SlotOfAddressSpace0, s).violation
    assert v is not None
    assert v.message.startswith("guest-access-frame: vcpu0 writes gfn 0x1"), v.message
    assert "address space 1" in v.message


def test_v5_11_keeps_vcpu_roots_live_and_accesses_in_their_memslots():
    s = scen({"vcpu0": [{"op": "vcpu_unload", "vcpu": 0}], "vcpu1": [run(1, "smi", "read 0x1")]},
             [run(0, "write 0x1"), run(1, "write 0x2")], vcpus=2, memslots=[SLOT0, SMRAM])
    res = check("v5.11", s)
    assert res.violation is None and res.result.complete
