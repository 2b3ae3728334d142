"""``x86.c`` at v5.10 (the vCPU run loop) and the guest side: the hardware page
walk and TLB a guest access goes through.

A vCPU thread runs a *guest program*: a list of memory accesses and SMM
transitions.  Each access is one guest instruction: the vCPU checks for a
pending request (a kick makes it leave guest mode at an instruction
boundary), looks up its TLB, and on a miss walks its root's EPT.  A missing or
read-only mapping is an EPT violation, handled by ``kvm_mmu_page_fault``; an
MMIO SPTE is an EPT misconfiguration.  An access to an MMIO gfn is emulated
and completes (the exit to userspace and back is not modelled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engine import Finding, cpu_relax
from ..kernel import srcu_read_lock, srcu_read_unlock
from . import shared
from .mmu import PFERR_RSVD_MASK
from .spte import (
    PAGE_SHIFT,
    SHADOW_PT_INDEX,
    is_last_spte,
    is_mmio_spte,
    is_shadow_present_pte,
    is_writable_pte,
    round_gfn_for_level,
    spte_to_pfn,
)
from .structs import (
    INVALID_PAGE,
    KVM_REQ_MMU_RELOAD,
    KVM_REQ_TLB_FLUSH,
    KVM_REQ_TLB_FLUSH_CURRENT,
    REQUEST_NAMES,
)
from .tdp_iter import to_shadow_page
from .tdp_mmu import PFERR_WRITE_MASK, RET_PF_EMULATE

__kernel_file__ = "arch/x86/kvm/x86.c"

PFERR_PRESENT_MASK = 1 << 0


@dataclass(frozen=True)
class GuestOp:
    """One guest instruction: ``read``/``write`` of a gfn, or ``smi``/``rsm``."""

    kind: str
    gfn: int = 0


@dataclass(frozen=True)
class VmExit:
    reason: str  # "ept_violation", "ept_misconfig", "kick", "smi", "rsm", "done"
    gpa: int = 0
    error_code: int = 0


class X86:
    """The vCPU side: ``kvm_arch_vcpu_ioctl_run`` down to the guest's accesses."""

    def kvm_arch_vcpu_ioctl_run(self, vcpu: Any, program: list[GuestOp]) -> None:
        kvm = vcpu.kvm
        vcpu.srcu_idx = srcu_read_lock(kvm.srcu)
        self.vcpu_run(vcpu, program)
        srcu_read_unlock(kvm.srcu, vcpu.srcu_idx)

    def vcpu_run(self, vcpu: Any, program: list[GuestOp]) -> None:
        pc = 0
        while pc < len(program):
            pc = self.vcpu_enter_guest(vcpu, program, pc)

    def kvm_request_pending(self, vcpu: Any) -> bool:
        return bool(vcpu.requests.load())

    def kvm_check_request(self, req: int, vcpu: Any) -> bool:
        return shared.test_and_clear(vcpu.requests, 1 << req,
                                     f"kvm_check_request({REQUEST_NAMES[req]})")

    def vcpu_enter_guest(self, vcpu: Any, program: list[GuestOp], pc: int) -> int:
        kvm = vcpu.kvm
        if self.kvm_request_pending(vcpu):
            if self.kvm_check_request(KVM_REQ_MMU_RELOAD, vcpu):
                self.kvm_mmu_unload(vcpu)
            if self.kvm_check_request(KVM_REQ_TLB_FLUSH, vcpu):
                self.kvm_vcpu_flush_tlb_all(vcpu)
            if self.kvm_check_request(KVM_REQ_TLB_FLUSH_CURRENT, vcpu):
                self.kvm_vcpu_flush_tlb_current(vcpu)
        if self.kvm_mmu_reload(vcpu):
            return pc
        srcu_read_unlock(kvm.srcu, vcpu.srcu_idx)  # guest mode: no SRCU read side
        exit_, pc = self.guest_run(vcpu, program, pc)
        vcpu.srcu_idx = srcu_read_lock(kvm.srcu)
        return self.handle_exit(vcpu, exit_, pc)

    def handle_exit(self, vcpu: Any, exit_: VmExit, pc: int) -> int:
        if exit_.reason == "ept_violation":
            vcpu.fault_retry_spin = False
            if self.kvm_mmu_page_fault(vcpu, exit_.gpa, exit_.error_code) == RET_PF_EMULATE:
                pc += 1  # the access was emulated as MMIO
            elif vcpu.fault_retry_spin:
                # An invalidation is in progress: the guest will fault again and
                # again until it ends.  Each retry changes nothing, so the vCPU
                # waits for a write to what it read instead of spinning.
                cpu_relax()
        elif exit_.reason == "ept_misconfig":
            if self.kvm_mmu_page_fault(vcpu, exit_.gpa, PFERR_RSVD_MASK) == RET_PF_EMULATE:
                pc += 1
        elif exit_.reason == "smi":
            self.enter_smm(vcpu)
            pc += 1
        elif exit_.reason == "rsm":
            self.leave_smm(vcpu)
            pc += 1
        return pc

    def enter_smm(self, vcpu: Any) -> None:
        vcpu.smm = 1
        self.kvm_smm_changed(vcpu)

    def leave_smm(self, vcpu: Any) -> None:
        vcpu.smm = 0
        self.kvm_smm_changed(vcpu)

    def kvm_smm_changed(self, vcpu: Any) -> None:
        # SMM uses its own address space (as_id 1) and so another root role.
        self.kvm_mmu_reset_context(vcpu)

    # --------------------------------------------------------------- guest
    def guest_run(self, vcpu: Any, program: list[GuestOp], pc: int) -> tuple[VmExit, int]:
        """Run guest instructions from ``pc`` until one exits to KVM."""
        while pc < len(program):
            op = program[pc]
            if op.kind in ("smi", "rsm"):
                return VmExit(op.kind), pc
            exit_ = self.guest_access(vcpu, op.gfn, op.kind == "write")
            if exit_ is not None:
                return exit_, pc
            pc += 1
        return VmExit("done"), pc

    def guest_access(self, vcpu: Any, gfn: int, write: bool) -> VmExit | None:
        """One guest memory access through the TLB and, on a miss, the EPT."""
        kvm = vcpu.kvm
        tlb = vcpu.tlb
        write_acc = shared.guest_write_accesses(kvm, 1 if vcpu.smm else 0, gfn) if write else ()
        shared.tlb_lookup_point(tlb, vcpu.requests, write_acc)
        if vcpu.requests.value:
            return VmExit("kick")
        entry = tlb.entries.get(gfn)
        if entry is not None and (entry[1] or not write):
            self.guest_memory_access(vcpu, gfn, entry[0], write)
            return None
        if vcpu.mmu.root_hpa == INVALID_PAGE:
            raise Finding("BUG", f"vcpu{vcpu.vcpu_id} entered the guest without a root",
                          "vcpu_enter_guest")
        self.check_hardware_pfn(vcpu, vcpu.mmu.root_hpa >> PAGE_SHIFT)
        root = to_shadow_page(kvm, vcpu.mmu.root_hpa >> PAGE_SHIFT)
        # The walk reads the root's paging structure (root->root: the root
        # itself for the TDP MMU, its tree object for the legacy MMU).
        shared.hardware_walk_point(root.root, gfn, tlb, vcpu.requests, write_acc)
        if vcpu.requests.value:
            return VmExit("kick")
        gpa = gfn << PAGE_SHIFT
        sp = root
        level = vcpu.mmu.shadow_root_level
        while True:
            spte = sp.spt[SHADOW_PT_INDEX(gfn, level)]
            if not is_shadow_present_pte(spte):
                if is_mmio_spte(spte):
                    return VmExit("ept_misconfig", gpa)
                return VmExit("ept_violation", gpa, PFERR_WRITE_MASK if write else 0)
            if is_last_spte(spte, level):
                break
            self.check_hardware_pfn(vcpu, spte_to_pfn(spte))
            sp = to_shadow_page(kvm, spte_to_pfn(spte))
            level -= 1
        if write and not is_writable_pte(spte):
            return VmExit("ept_violation", gpa, PFERR_WRITE_MASK | PFERR_PRESENT_MASK)
        pfn = spte_to_pfn(spte) + (gfn - round_gfn_for_level(gfn, level))
        tlb.entries[gfn] = (pfn, is_writable_pte(spte))
        tlb.version += 1
        self.guest_memory_access(vcpu, gfn, pfn, write)
        return None

    def check_hardware_pfn(self, vcpu: Any, pfn: int) -> None:
        """The CPU walking a freed page table is a use-after-free no sanitizer sees."""
        if pfn in vcpu.kvm.freed_phys or pfn not in vcpu.kvm.phys:
            name = vcpu.kvm.freed_phys.get(pfn, f"pfn {pfn:#x}")
            raise Finding("use-after-free",
                          f"vcpu{vcpu.vcpu_id}: EPT walk through freed page table {name}",
                          "guest_access")

    def guest_memory_access(self, vcpu: Any, gfn: int, pfn: int, write: bool) -> None:
        self.trace_event(vcpu.kvm, "guest_access", vcpu=vcpu, gfn=gfn, pfn=pfn, write=write,
                         as_id=1 if vcpu.smm else 0)
