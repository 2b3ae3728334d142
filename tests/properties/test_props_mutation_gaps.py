"""Gaps the mutation script (bench/mutants.py) found in the built-in scenarios and
properties, each closed generally: a realistic one-function bug is caught, and
the released versions still verify."""

from __future__ import annotations

from typing import Any

import pytest
from props_lib import SLOT0, run, scen

from tdpmmu.checker import check
from tdpmmu.kvm.versions import V5_11, V5_13

RELEASES = ("v5.10-fix-v1", "v5.11", "v5.12", "v5.13")


class _LoadWithoutFlush(V5_11):
    """kvm_mmu_load without ``kvm_x86_ops.tlb_flush_current`` after loading a root."""

    name = "v5.11+load-without-flush"

    def kvm_mmu_load(self, vcpu: Any) -> int:
        return self.mmu_alloc_roots(vcpu)


class _HvaRangeResultOfLastRoot(V5_11):
    """kvm_tdp_mmu_handle_hva_range keeps only the last root's result."""

    name = "v5.11+hva-range-last-root"

    def kvm_tdp_mmu_handle_hva_range(self, kvm: Any, start: int, end: int, data: Any,
                                     handler: Any) -> int:
        ret = 0
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm):
            ret = self.handle_hva_range_root(kvm, root, start, end, data, handler)
        return ret


class _HvaRangeResultOfLastRoot513(V5_13):
    """The same lost result in 5.13's ``kvm_tdp_mmu_handle_hva_range``."""

    name = "v5.13+hva-range-last-root"

    def kvm_tdp_mmu_handle_hva_range(self, kvm: Any, start: int, end: int, data: Any,
                                     handler: Any) -> int:
        ret = 0
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm):
            ret = self.handle_hva_range_root(kvm, root, start, end, data, handler)
        return ret


class _EnableLogWithoutWrprot(V5_11):
    """Enabling dirty logging does not write-protect the slot's SPTEs."""

    name = "v5.11+log-without-wrprot"

    def kvm_mmu_slot_remove_write_access(self, kvm: Any, memslot: Any,
                                         start_level: int) -> None:
        pass


@pytest.mark.parametrize("release", RELEASES)
def test_releases_verify_the_new_scenario(release):
    assert check(release, "smm-roots-vs-invalidate").violation is None


def test_a_root_loaded_without_a_tlb_flush_is_reported():
    v = check(_LoadWithoutFlush, "smm-roots-vs-invalidate").violation
    assert v is not None and v.message.startswith("guest-access-frame: vcpu1 reads gfn 0x1"), \
        v and v.message


@pytest.mark.parametrize("kernel", [_HvaRangeResultOfLastRoot, _HvaRangeResultOfLastRoot513])
def test_a_notifier_result_lost_across_roots_is_reported(kernel):
    v = check(kernel, "smm-roots-vs-invalidate").violation
    assert v is not None and "TLB" in v.message and "0x1" in v.message, v and v.message


def test_a_write_lost_to_dirty_logging_is_reported_without_a_later_read():
    v = check(_EnableLogWithoutWrprot, "huge-split-fault").violation
    assert v is not None and v.message.startswith("dirty-log-complete: guest writes to gfn"), \
        v and v.message
    assert check("v5.11", "huge-split-fault").violation is None


def test_a_write_owed_but_in_the_bitmap_is_not_a_finding():
    # Logging on from the start, one write, no read: the bit is set, nothing is missed.
    slot = dict(SLOT0, log_dirty=True)
    s = scen({"vcpu0": [run(0, "write 0x1", "write 0x2")]}, memslots=[slot])
    for release in RELEASES:
        assert check(release, s).violation is None, release


def test_a_livelock_before_the_threads_start_is_a_finding():
    class _NeverLoads(V5_11):
        name = "v5.11+never-loads"

        def kvm_tdp_mmu_get_vcpu_root_hpa(self, vcpu: Any) -> int:
            self.get_tdp_mmu_vcpu_root(vcpu)
            return -1  # INVALID_PAGE: the vCPU retries for ever

    v = check(_NeverLoads, "teardown", max_executions=2).violation
    assert v is not None and v.kind == "livelock" and v.thread == "setup", v


class _FastZapWithoutTdpZap(V5_11):
    """A memslot deletion's fast zap forgets the TDP MMU's roots."""

    name = "v5.11+fast-zap-without-tdp"

    def kvm_mmu_zap_all_fast(self, kvm: Any) -> None:
        from tdpmmu.kvm.mmu_lock import KVM_MMU_LOCK, KVM_MMU_UNLOCK
        KVM_MMU_LOCK(kvm)
        kvm.arch.mmu_valid_gen = 1 - kvm.arch.mmu_valid_gen
        self.kvm_reload_remote_mmus(kvm)
        KVM_MMU_UNLOCK(kvm)


def test_a_mapping_of_a_deleted_memslot_is_reported_when_the_ioctl_returns():
    v = check(_FastZapWithoutTdpZap, "teardown").violation
    assert v is not None and v.message.startswith(
        "memslot-removed: after KVM_MR_DELETE of memslot 1"), v and v.message


@pytest.mark.parametrize("release", RELEASES[1:])
def test_releases_verify_a_memslot_deletion_and_move(release):
    assert check(release, "teardown").violation is None
    assert check(release, "seed-bug", max_executions=300).violation is None


class _HvaRangeResultOfLastSlot(V5_11):
    """handle_hva_range_root keeps only the last memslot's result."""

    name = "v5.11+hva-range-last-slot"

    def handle_hva_range_root(self, kvm: Any, root: Any, start: int, end: int, data: Any,
                              handler: Any) -> int:
        from tdpmmu.kvm.tdp_mmu import kvm_mmu_page_as_id
        ret = 0
        for memslot in self._kvm_memslots(kvm, kvm_mmu_page_as_id(root)).slots:
            hva_start = max(start, memslot.userspace_addr)
            hva_end = min(end, memslot.userspace_addr + memslot.npages)
            if hva_start >= hva_end:
                continue
            gfn_start = memslot.base_gfn + (hva_start - memslot.userspace_addr)
            gfn_end = memslot.base_gfn + (hva_end - memslot.userspace_addr)
            ret = handler(kvm, memslot, root, gfn_start, gfn_end, data)
        return ret


def test_a_notifier_result_lost_across_memslots_is_reported():
    v = check(_HvaRangeResultOfLastSlot, "smm-roots-vs-invalidate").violation
    assert v is not None and "TLB" in v.message, v and v.message


class _WrprotWithoutFlush(V5_11):
    """Dirty logging's write-protection never flushes the TLBs."""

    name = "v5.11+wrprot-without-flush"

    def kvm_arch_flush_remote_tlbs_memslot(self, kvm: Any, memslot: Any) -> None:
        pass


def test_a_write_through_a_stale_writable_tlb_entry_is_reported():
    v = check(_WrprotWithoutFlush, "dirty-log-enable-vs-writes").violation
    assert v is not None and v.message.startswith("dirty-log-complete:"), v and v.message
    for release in RELEASES:
        assert check(release, "dirty-log-enable-vs-writes").violation is None, release


class _ReleaseWithoutZap(V5_11):
    """->release (kvm_arch_flush_shadow_all) leaves the SPTEs in place."""

    name = "v5.11+release-without-zap"

    def kvm_mmu_zap_all(self, kvm: Any) -> None:
        pass


def test_a_mapping_left_after_release_is_reported():
    v = check(_ReleaseWithoutZap, "next-root-deleted").violation
    assert v is not None and v.message.startswith("mmu-notifier: after ->release returned"), \
        v and v.message
