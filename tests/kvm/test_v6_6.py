"""Linux 6.6 (``V6_6``): invalidated roots are flagged and zapped synchronously
(0df9dab891ff); the yield-safe walk covers every address space (441a5dfcd968)."""

from __future__ import annotations

import pytest
from kvm_testlib import SLOT0, SMRAM, leaf_sptes, roots, run_vcpu, scenario, vcpu_root, world

from tdpmmu.checker import check
from tdpmmu.kernel import refcount_read, write_lock, write_unlock
from tdpmmu.kvm.v6_4 import V6_4
from tdpmmu.kvm.v6_6 import V6_6
from tdpmmu.kvm.versions import BUILTIN
from tdpmmu.scenarios import scenario_names


def test_v6_6_is_built_in_a_v6_4_without_a_kernel_worker():
    assert BUILTIN["v6.6"] is V6_6
    assert issubclass(V6_6, V6_4)
    w = world(V6_6, scenario([run_vcpu(0, "write 0x1")]))
    assert getattr(w.kvm.arch, "tdp_mmu_zap_wq", None) is None


@pytest.mark.parametrize("name", scenario_names())
def test_v6_6_runs_every_builtin_scenario(name):
    """No finding on any built-in scenario (bounded here; the note has the runs)."""
    res = check("v6.6", name, max_executions=15)
    assert res.result.executions >= 1
    assert res.violation is None, res.violation.message


def test_invalidation_flags_the_root_and_the_zap_puts_the_tdp_mmus_reference():
    w = world(V6_6, scenario([run_vcpu(0, "write 0x1")]))
    root = vcpu_root(w.kvm.vcpus[0])
    write_lock(w.kvm.mmu_lock)
    w.k.kvm_tdp_mmu_invalidate_all_roots(w.kvm)
    write_unlock(w.kvm.mmu_lock)
    assert root.role.invalid and root.tdp_mmu_scheduled_root_to_zap
    assert refcount_read(root.tdp_mmu_root_count) == 2
    w.k.kvm_tdp_mmu_zap_invalidated_roots(w.kvm)
    # Zapped synchronously: flag cleared, the TDP MMU's reference put, the
    # vCPU's left; the root stays listed until the vCPU lets go.
    assert not root.tdp_mmu_scheduled_root_to_zap
    assert refcount_read(root.tdp_mmu_root_count) == 1
    assert roots(w.kvm) == [root]
    assert all(s == 0 for s in root.spt)


def test_a_second_zap_finds_nothing_flagged():
    """An invalid root is zapped and put once: a later zap skips it."""
    w = world(V6_6, scenario([run_vcpu(0, "write 0x1")]))
    root = vcpu_root(w.kvm.vcpus[0])
    write_lock(w.kvm.mmu_lock)
    w.k.kvm_tdp_mmu_invalidate_all_roots(w.kvm)
    write_unlock(w.kvm.mmu_lock)
    w.k.kvm_tdp_mmu_zap_invalidated_roots(w.kvm)
    w.k.kvm_tdp_mmu_zap_invalidated_roots(w.kvm)
    assert refcount_read(root.tdp_mmu_root_count) == 1


def test_zap_leafs_covers_both_address_spaces():
    """441a5dfcd968: kvm_zap_gfn_range walks the SMM root too, in one call."""
    w = world(V6_6, scenario([run_vcpu(0, "write 0x1", "smi", "write 0x1")],
                             memslots=[SLOT0, SMRAM]))
    assert len(roots(w.kvm)) == 2
    assert all(leaf_sptes(w.kvm, root) for root in roots(w.kvm))
    w.k.kvm_zap_gfn_range(w.kvm, 0, 16)
    assert not any(leaf_sptes(w.kvm, root) for root in roots(w.kvm))


@pytest.mark.parametrize("name", ["teardown", "destroy-vm-with-queued-zap", "last-root-put",
                                  "memslot-delete-then-munmap"])
def test_synchronous_zaps_and_teardown_verify(name):
    res = check("v6.6", name, max_executions=2000)
    assert res.violation is None, res.violation.message
    assert res.result.complete


class ZapSkipsThePut(V6_6):
    """What-if: the synchronous zap forgets to put the gifted reference."""

    name = "v6.6+zap-without-put"

    def kvm_tdp_mmu_zap_invalidated_roots(self, kvm):
        from tdpmmu.kernel import read_lock, read_unlock
        read_lock(kvm.mmu_lock)
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm, True):
            if root.tdp_mmu_scheduled_root_to_zap:
                root.tdp_mmu_scheduled_root_to_zap = False
                self.tdp_mmu_zap_root(kvm, root, True)
        read_unlock(kvm.mmu_lock)


def test_a_zap_that_does_not_put_the_tdp_mmus_reference_leaks_the_root():
    res = check(ZapSkipsThePut, "teardown", max_executions=2000)
    assert res.violation is not None
