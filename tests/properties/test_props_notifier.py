"""The MMU-notifier contract and host frame lifetime (issue 9, gap 2)."""

from __future__ import annotations

from typing import Any

from props_lib import messages, run, scen

from tdpmmu.checker import check
from tdpmmu.kernel import spin_lock, spin_unlock
from tdpmmu.kvm.mmu import KVM_PFN_ERR_RO_FAULT
from tdpmmu.kvm.tdp_mmu import PFERR_WRITE_MASK, RET_PF_EMULATE, RET_PF_RETRY
from tdpmmu.kvm.versions import V5_11


class _SeqAfterPfn(V5_11):
    """direct_page_fault snapshots mmu_notifier_seq after looking up the pfn."""

    name = "v5.11+seq-after-pfn"

    def direct_page_fault(self, vcpu: Any, gpa: int, error_code: int, prefault: bool,
                          max_level: int, is_tdp: bool) -> int:
        kvm = vcpu.kvm
        gfn = gpa >> 12
        write = bool(error_code & PFERR_WRITE_MASK)
        pfn, map_writable = self.try_async_pf(vcpu, prefault, gfn, gpa, write)
        mmu_seq = kvm.mmu_notifier_seq.load()
        if pfn is KVM_PFN_ERR_RO_FAULT:
            return RET_PF_EMULATE
        r = RET_PF_RETRY
        spin_lock(kvm.mmu_lock)
        if self.mmu_notifier_retry(kvm, mmu_seq):
            vcpu.fault_retry_spin = True
        elif self.is_tdp_mmu_root(kvm, vcpu.mmu.root_hpa):
            r = self.kvm_tdp_mmu_map(vcpu, gpa, error_code, map_writable, max_level, pfn,
                                     prefault)
        spin_unlock(kvm.mmu_lock)
        return r


class _NoInProgressCount(V5_11):
    """The notifier never raises mmu_notifier_count: only the sequence guards faults."""

    name = "v5.11+no-in-progress-count"

    def kvm_mmu_notifier_invalidate_range_start(self, kvm: Any, start: int, end: int) -> None:
        spin_lock(kvm.mmu_lock)
        if self.kvm_unmap_hva_range(kvm, start, end):
            self.kvm_flush_remote_tlbs(kvm)
        spin_unlock(kvm.mmu_lock)

    def kvm_mmu_notifier_invalidate_range_end(self, kvm: Any, start: int, end: int) -> None:
        spin_lock(kvm.mmu_lock)
        kvm.mmu_notifier_seq.store(kvm.mmu_notifier_seq.value + 1)
        self.trace_event(kvm, "invalidate_range_end", start=start, end=end)
        spin_unlock(kvm.mmu_lock)


def test_fault_snapshotting_the_sequence_after_the_pfn_maps_a_freed_frame():
    v = check(_SeqAfterPfn, "notifier-vs-unload").violation
    assert v is not None
    assert any(m.startswith("mmu-notifier: use-after-free of host frame") for m in
               messages(v)), messages(v)
    text = "\n".join(v.details if v.message.startswith("mmu-notifier") else
                     v.root_cause.details)
    assert "Released by the host" in text and "do_invalidate" in text
    assert "kvm_tdp_mmu_map" in text  # the site that mapped it


def test_a_fault_installing_during_an_invalidation_is_reported_at_the_store():
    s = scen({"host": [{"op": "invalidate", "hva": 0x101, "npages": 1}],
              "vcpu0": [run(0, "read 0x1")]}, [run(0, "read 0x2")])
    v = check(_NoInProgressCount, s).violation
    assert v is not None
    assert any("installed while invalidate_range(hva 0x101-0x102) is in progress" in m
               for m in messages(v)), messages(v)


def test_v5_11_keeps_the_notifier_contract():
    """notifier-vs-unload here; change-pte-and-age's complete verification on
    v5.11 (60,000 executions since the CPU sets Accessed bits) is the
    acceptance test's (test_v5_11_verifies_the_other_built_in_scenarios)."""
    res = check("v5.11", "notifier-vs-unload")
    assert res.violation is None, res.violation.message
    assert res.result.complete
