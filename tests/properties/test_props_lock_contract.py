"""Writes to lock-protected state assert their lock (issue 9, gap 4)."""

from __future__ import annotations

from typing import Any

from tdpmmu.checker import check
from tdpmmu.kernel import list_add, spin_lock, spin_unlock, write_lock, write_unlock
from tdpmmu.kvm import shared
from tdpmmu.kvm.v6_9 import V6_9
from tdpmmu.kvm.versions import V5_11


class _ListAddUnlocked(V5_11):
    """get_tdp_mmu_vcpu_root publishes the new root after dropping mmu_lock."""

    name = "v5.11+list-add-unlocked"

    def get_tdp_mmu_vcpu_root(self, vcpu: Any) -> Any:
        kvm = vcpu.kvm
        role = self.page_role_for_level(vcpu, vcpu.mmu.shadow_root_level)
        spin_lock(kvm.mmu_lock)
        for root in self.for_each_tdp_mmu_root(kvm):
            if root.role.word == role.word:
                self.kvm_mmu_get_root(kvm, root)
                spin_unlock(kvm.mmu_lock)
                return root
        root = self.alloc_tdp_mmu_page(vcpu, 0, vcpu.mmu.shadow_root_level)
        root.name = f"r{kvm.nr_roots_made}"
        kvm.nr_roots_made += 1
        root.root = root
        root.root_count = 1
        shared.note(f"new root {root.name} ({root.role}) count 1")
        spin_unlock(kvm.mmu_lock)
        list_add(root.link, kvm.arch.tdp_mmu_roots)
        return root


class _PutUnlocked(V5_11):
    """kvm_mmu_free_roots drops its reference after dropping mmu_lock (no lockdep
    assertion in the put itself: the model's contract must catch the write)."""

    name = "v5.11+put-unlocked"

    def kvm_mmu_put_root(self, kvm: Any, sp: Any) -> bool:
        sp.root_count -= 1
        return not sp.root_count

    def kvm_mmu_free_roots(self, vcpu: Any, mmu: Any, roots_to_free: int = 0) -> None:
        from tdpmmu.kvm.structs import INVALID_PAGE
        kvm = vcpu.kvm
        if mmu.root_hpa == INVALID_PAGE:
            return
        sp = kvm.phys[mmu.root_hpa >> 12]
        last = self.kvm_mmu_put_root(kvm, sp)
        spin_lock(kvm.mmu_lock)
        if last:
            self.kvm_tdp_mmu_free_root(kvm, sp)
        mmu.root_hpa = INVALID_PAGE
        spin_unlock(kvm.mmu_lock)


def test_list_add_of_a_new_root_without_mmu_lock_is_reported():
    v = check(_ListAddUnlocked, "seed-bug").violation
    assert v is not None and v.kind == "WARN"
    assert "tdp_mmu_roots" in v.message and "mmu_lock" in v.message
    assert v.function == "get_tdp_mmu_vcpu_root"


def test_root_count_written_without_mmu_lock_is_reported():
    v = check(_PutUnlocked, "seed-bug").violation
    assert v is not None and v.kind == "WARN"
    assert "root_count" in v.message and "mmu_lock" in v.message


def test_v5_11_writes_its_protected_state_under_mmu_lock():
    for scenario in ("teardown", "next-root-deleted", "notifier-vs-unload"):
        assert check("v5.11", scenario).violation is None


class _LegacyRootUnlocked(V6_9):
    """6.9's mmu_alloc_direct_roots allocates a legacy root after dropping
    mmu_lock (the shadow page's root_count and active_mmu_pages unlocked)."""

    name = "v6.9+legacy-root-unlocked"

    def mmu_alloc_direct_roots(self, vcpu: Any) -> int:
        kvm = vcpu.kvm
        if kvm.arch.tdp_mmu_enabled:
            return self.kvm_tdp_mmu_alloc_root(vcpu)
        write_lock(kvm.mmu_lock)
        write_unlock(kvm.mmu_lock)
        vcpu.mmu.root_hpa = self.mmu_alloc_root(vcpu, 0, 0, vcpu.mmu.shadow_root_level)
        return 0


def test_a_legacy_root_allocated_without_mmu_lock_is_reported():
    """The legacy MMU's pages are under the write lock in every version."""
    assert check(V6_9, "legacy-roots-vs-memslot-delete", max_executions=30).violation is None
    v = check(_LegacyRootUnlocked, "legacy-roots-vs-memslot-delete",
              max_executions=30).violation
    assert v is not None and v.kind == "WARN", v
    assert "mmu_lock" in v.message and ("active_mmu_pages" in v.message
                                        or "root_count" in v.message), v.message
