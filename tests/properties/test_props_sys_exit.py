"""lockdep's check on the return to user space (``lockdep_sys_exit``)."""

from __future__ import annotations

from typing import Any

from props_lib import scen

from tdpmmu.checker import check
from tdpmmu.kernel import srcu_read_lock, srcu_read_unlock
from tdpmmu.kvm.kvm_main import KVM_MMU_LOCK, KVM_MMU_UNLOCK
from tdpmmu.kvm.versions import V5_11


class _ChangePteKeepsSrcu(V5_11):
    """change_pte returns with kvm->srcu still held (no srcu_read_unlock)."""

    name = "v5.11+change-pte-keeps-srcu"

    def kvm_mmu_notifier_change_pte(self, kvm: Any, address: int, pte: Any) -> None:
        srcu_read_lock(kvm.srcu)
        KVM_MMU_LOCK(kvm)
        kvm.mmu_notifier_seq.store(kvm.mmu_notifier_seq.value + 1)
        if self.kvm_set_spte_hva(kvm, address, pte):
            self.kvm_flush_remote_tlbs(kvm)
        KVM_MMU_UNLOCK(kvm)


class _AgeKeepsMmuLock(V5_11):
    """clear_flush_young returns with mmu_lock still held (the unlock swapped
    into the branch that is not taken); no other thread takes the lock."""

    name = "v5.11+age-keeps-mmu-lock"

    def kvm_mmu_notifier_clear_flush_young(self, kvm: Any, start: int, end: int) -> int:
        idx = srcu_read_lock(kvm.srcu)
        KVM_MMU_LOCK(kvm)
        young = self.kvm_age_hva(kvm, start, end)
        if young:
            self.kvm_flush_remote_tlbs(kvm)
            KVM_MMU_UNLOCK(kvm)
        srcu_read_unlock(kvm.srcu, idx)
        return young


def _host_only() -> Any:
    return scen({"host": [{"op": "change_pte", "hva": 0x100}]})


def test_srcu_held_at_return_is_reported() -> None:
    v = check(_ChangePteKeepsSrcu, _host_only()).violation
    assert v is not None and v.kind == "lockdep"
    assert v.message == "WARNING: lock held when returning to user space!"
    assert any("kvm->srcu" in line for line in v.details)


def test_mmu_lock_held_at_return_is_reported_without_a_waiter() -> None:
    age = scen({"host": [{"op": "age", "hva": 0x100, "npages": 1}]})
    v = check(_AgeKeepsMmuLock, age).violation
    assert v is not None and v.message == "WARNING: lock held when returning to user space!"
    assert any("kvm->mmu_lock" in line for line in v.details)


def test_release_returns_with_nothing_held() -> None:
    r = check(V5_11, _host_only())
    assert r.violation is None and r.result.complete
    r = check(V5_11, "change-pte-and-age", max_executions=300)
    assert r.violation is None
