"""Survivor classes of bench/mutants.py made observable (issue 9, second round):
a flush lost by a fault under the read lock, a re-protection mask that keeps
only its last bit, and a page table never put on (or never taken off)
``tdp_mmu_pages``."""

from __future__ import annotations

from typing import Any

import pytest

from tdpmmu.checker import check
from tdpmmu.kvm import shared as sh
from tdpmmu.kvm.mmu_lock import KVM_MMU_LOCK, KVM_MMU_UNLOCK
from tdpmmu.kvm.v5_12 import V5_12
from tdpmmu.kvm.versions import V5_11


class _SplitWithoutFlush(V5_12):
    """08f07c800e9d undone: the fault zaps a huge SPTE under the read lock
    (freeze, clear) without flushing the TLBs in between."""

    name = "v5.12+split-without-flush"

    def tdp_mmu_zap_spte_atomic(self, kvm: Any, it: Any) -> bool:
        from tdpmmu.kvm.spte import REMOVED_SPTE
        if not self.tdp_mmu_set_spte_atomic(kvm, it, REMOVED_SPTE):
            return False
        sh.write_spte(it.sp, it.index, 0)
        return True


def test_a_flush_lost_under_the_read_lock_is_reported() -> None:
    v = check(_SplitWithoutFlush, "huge-split-fault", max_executions=300).violation
    assert v is not None and v.message.startswith("tlb-coherence:"), v and v.message
    assert "gfn 0x3" in v.message


class _ReprotectLastBitOnly(V5_11):
    """``mask = 1 << ...`` for ``mask |= ...``: of the dirty pages of one
    bitmap word only the last is write-protected again."""

    name = "v5.11+reprotect-last-bit"

    def take_dirty_bits_and_reprotect(self, kvm: Any, slot: Any, pages: Any) -> list[int]:
        from tdpmmu.kvm.kvm_main import BITS_PER_LONG
        wanted = set(pages)
        taken = []
        flush = False
        KVM_MMU_LOCK(kvm)
        for offset in range(0, slot.npages, BITS_PER_LONG):
            mask = 0
            for i in range(offset, min(offset + BITS_PER_LONG, slot.npages)):
                if i in wanted and slot.dirty_bitmap[i]:
                    slot.dirty_bitmap[i] = 0
                    mask = 1 << (i - offset)
                    taken.append(slot.base_gfn + i)
            if mask:
                flush = True
                self.kvm_arch_mmu_enable_log_dirty_pt_masked(kvm, slot, offset, mask)
        KVM_MMU_UNLOCK(kvm)
        if flush:
            self.kvm_arch_flush_remote_tlbs_memslot(kvm, slot)
        return taken


def test_a_page_left_writable_by_the_clear_is_reported() -> None:
    v = check(_ReprotectLastBitOnly, "dirty-log-clear").violation
    assert v is not None and v.message.startswith("dirty-log-complete:"), v and v.message
    assert "gfn 0x1" in v.message


class _MapWithoutLink(V5_12):
    """The fault installs a new page table without ``tdp_mmu_link_page``: the
    page is never on ``tdp_mmu_pages``, and its unlink deletes a node whose
    pointers are still the zeroed allocation's NULLs."""

    name = "v5.12+map-without-link"

    def tdp_mmu_link_page(self, kvm: Any, sp: Any, shared: bool, account_nx: bool) -> None:
        pass


def test_a_page_table_never_linked_oopses_at_its_unlink() -> None:
    v = check(_MapWithoutLink, "teardown").violation
    assert v is not None and v.message.startswith(
        "BUG: kernel NULL pointer dereference"), v and v.message


class _RemovedPageStaysListed(V5_12):
    """handle_removed_tdp_mmu_page without ``tdp_mmu_unlink_page``: the page
    table is freed after a grace period while still on ``tdp_mmu_pages``."""

    name = "v5.12+removed-page-stays-listed"

    def tdp_mmu_unlink_page(self, kvm: Any, sp: Any, shared: bool) -> None:
        pass


def test_a_freed_page_left_on_tdp_mmu_pages_is_a_use_after_free() -> None:
    v = check(_RemovedPageStaysListed, "refault-after-grace-period").violation
    assert v is not None and v.kind == "KASAN", v and v.message
    assert "use-after-free in tdp_mmu_link_page" in v.message


@pytest.mark.parametrize("release", ["v5.11", "v5.12", "v5.13", "v5.18", "v6.9"])
def test_releases_verify_the_scenarios(release: str) -> None:
    assert check(release, "dirty-log-clear").violation is None
    assert check(release, "huge-split-fault", max_executions=300).violation is None
    assert check(release, "teardown").violation is None
    assert check(release, "refault-after-grace-period").violation is None

