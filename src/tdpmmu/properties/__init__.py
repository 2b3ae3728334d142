"""What a run is judged by, beyond the kernel's own BUG/WARN/KASAN/lockdep reports.

Each property watches the model through tracepoints (``kvm.probes``), a
per-step invariant, or a final check after teardown.  A broken property is
reported with :func:`tdpmmu.engine.report` and the run goes on: if the kernel
itself fails later, the report shows that failure with the property as its
root cause; otherwise the property is the finding.
"""

from __future__ import annotations

from typing import Any

from .aging import AgingAnswers
from .dirty_log import DirtyLogComplete
from .host_frames import HostFrames
from .invalidation import InvalidationComplete
from .kprobe import install_kprobe
from .leak import check_no_leak
from .lock_contract import install_lock_contract
from .memslot import MemslotRemoved
from .root_lifecycle import (
    InvalidatedRootsZapped,
    NoZeroCountRootUnderWriteLock,
    TdpMmuReferencePutOnce,
)
from .root_lifecycle import install as install_root_lifecycle
from .root_list import NoZeroCountRoot, OneValidRootPerRole
from .tlb import PT_FLUSH_BEFORE_RCU_FREE, TlbCoherence, TlbProvenance
from .vcpu_root import VcpuRootLive
from .zap_range import ZapRangeComplete

ALL = ("lock-contract", "no-zero-count-root", "vcpu-root-live", "mmu-notifier",
       "guest-access-frame", "tlb-coherence", "invalidation-complete", "dirty-log-complete",
       "memslot-removed", "no-leak", "one-valid-root-per-role", "tdp-mmu-reference-put-once",
       "no-zero-count-root-under-write-lock", "invalidated-roots-zapped", "zap-range-complete",
       "aging-young")


class Properties:
    """The properties of one execution, attached to its VM."""

    def __init__(self, kvm: Any, kernel: Any = None) -> None:
        if kernel is not None:
            install_lock_contract(kvm, kernel.lock_contract(kvm))
        self.root_list = NoZeroCountRoot(kvm)
        # Only on a version whose code promises it (6.9's recheck).
        self.one_root_per_role = (OneValidRootPerRole(kvm) if getattr(
            kernel, "promises_one_valid_root_per_role", False) else None)
        contract = getattr(kernel, "tlb_flush_contract", None)
        # Which root each TLB entry came through, so which entries a guest
        # access can still use: read by every check of the vCPUs' TLBs.
        self.provenance = TlbProvenance(kvm, contract)
        self.invalidation = InvalidationComplete(kvm, self.provenance)
        self.dirty_log = DirtyLogComplete(kvm)
        self.vcpu_root = VcpuRootLive(kvm)
        self.frames = HostFrames(kvm, self.provenance)
        self.tlb = TlbCoherence(kvm, contract, self.provenance)
        if contract in PT_FLUSH_BEFORE_RCU_FREE and hasattr(kernel, "tdp_mmu_free_sp"):
            # The free of a page table, which the TLB check judges under a
            # contract that defers its flush to the caller (5.18+).
            install_kprobe(kernel, "tdp_mmu_free_sp")
        self.memslot = MemslotRemoved(kvm, self.provenance)
        self.zap_range = ZapRangeComplete(kvm)
        self.aging = AgingAnswers(
            kvm, lockless=getattr(kernel, "CONFIG_KVM_MMU_LOCKLESS_AGING", False),
            provenance=None if getattr(kernel, "CONFIG_KVM_ELIDE_TLB_FLUSH_IF_YOUNG", False)
            else self.provenance)
        kvm.probes.extend([self.provenance.probe, self.invalidation.probe, self.dirty_log.probe,
                           self.frames.probe, self.tlb.probe, self.memslot.probe,
                           self.zap_range.probe, self.aging.probe])
        # Only those the version's code promises (class attributes; see
        # properties.root_lifecycle).
        self.root_lifecycle = install_root_lifecycle(kvm, kernel)

    def invariant(self, kvm: Any) -> tuple[Any, ...] | None:
        """Checked between steps; returns what it read (see ``Execution._check_invariant``).

        ``vcpu_root`` reads each vCPU's ``root_hpa``, a plain field its own
        thread writes outside any visible operation, so no set of accesses
        covers what it read: the invariant runs after every step (``None``)
        until ``root_hpa`` is a watched word.
        """
        self.root_list.check()
        if self.one_root_per_role is not None:
            self.one_root_per_role.check()
        for p in self.root_lifecycle:
            if hasattr(p, "check"):
                p.check()
        self.vcpu_root.check()
        return None

    def before_teardown(self, kvm: Any) -> None:
        """Checked when every thread is done, before the VM is torn down."""
        self.dirty_log.at_end()

    def final(self, kvm: Any) -> None:
        """Checked after the VM is torn down."""
        check_no_leak(kvm)
        for p in self.root_lifecycle:
            if hasattr(p, "final"):
                p.final()


__all__ = ["ALL", "AgingAnswers", "DirtyLogComplete", "HostFrames", "InvalidatedRootsZapped",
           "InvalidationComplete", "MemslotRemoved", "NoZeroCountRoot",
           "NoZeroCountRootUnderWriteLock", "OneValidRootPerRole", "Properties",
           "TdpMmuReferencePutOnce", "TlbCoherence", "TlbProvenance", "VcpuRootLive",
           "ZapRangeComplete",
           "check_no_leak", "install_lock_contract"]
