"""``x86.c`` at v5.10 (the vCPU run loop) and the guest side: the hardware page
walk and TLB a guest access goes through.

A vCPU thread runs a *guest program*: a list of memory accesses, SMM
transitions and nested (VMX) transitions.  Each access is one guest
instruction: the vCPU checks for a pending request (a kick makes it leave
guest mode at an instruction boundary), looks up its TLB, and on a miss walks
its root's EPT.  A missing or read-only mapping is an EPT violation, handled by
``kvm_mmu_page_fault``; an MMIO SPTE is an EPT misconfiguration.  An access to
an MMIO gfn is emulated and completes (the exit to userspace and back is not
modelled).

Nested guests (``nested.c`` of VMX, with nested EPT): ``vmlaunch EPTP``
makes L1 enter L2 with an EPT pointer at guest frame EPTP
(``nested_vmx_enter_non_root_mode``: the vCPU's MMU becomes ``guest_mmu``,
whose root is a shadow of L1's EPT table), ``vmexit`` returns to L1
(``nested_vmx_vmexit``: back to ``root_mmu``, whose root stayed loaded;
guest_mmu keeps its root cached for the next entry), and ``invept`` is L1's
global INVEPT (``handle_invept``: frees every guest_mmu root).  Simplified:
L2 makes no memory accesses (the format rejects them), so L1's EPT tables
are never read and a shadow root maps nothing; vmcs12 checks, VM-entry
failures, nested state pages, the L2 TLB flushes and the PDPTRs are left
out; what is modelled is the root bookkeeping: which MMU is current, their
roots and ``prev_roots``, and the frees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..engine import Finding, cpu_relax
from ..kernel import WARN_ON, srcu_read_lock, srcu_read_unlock
from . import shared
from .mmu import KVM_MMU_ROOTS_ALL, PFERR_RSVD_MASK
from .spte import (
    PAGE_SHIFT,
    SHADOW_PT_INDEX,
    is_accessed_spte,
    is_dirty_spte,
    is_last_spte,
    is_mmio_spte,
    is_shadow_present_pte,
    is_writable_pte,
    round_gfn_for_level,
    shadow_accessed_mask,
    shadow_dirty_mask,
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


def ept_needs_ad_assist(spte: int, write: bool) -> bool:
    """Does an access through this leaf make the CPU update it (its Accessed
    bit clear, or a write and its Dirty bit clear)?"""
    return not is_accessed_spte(spte) or (write and not is_dirty_spte(spte))


@dataclass(frozen=True)
class GuestOp:
    """One guest instruction: ``read``/``write`` of a gfn, ``smi``/``rsm``,
    ``vmlaunch`` (gfn: the EPT pointer's frame), ``vmexit``, ``invept``."""

    kind: str
    gfn: int = 0


@dataclass(frozen=True)
class VmExit:
    reason: str  # "ept_violation", "ept_misconfig", "kick", "smi", "rsm", "done",
    #              "vmlaunch", "vmexit", "invept"
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
            self.kvm_check_cpu_dirty_logging_request(vcpu)
        if self.kvm_mmu_reload(vcpu):
            return pc
        srcu_read_unlock(kvm.srcu, vcpu.srcu_idx)  # guest mode: no SRCU read side
        vcpu.last_vmentry_cpu = 0  # the vCPU has run (kvm_vcpu_has_run)
        exit_, pc = self.guest_run(vcpu, program, pc)
        vcpu.srcu_idx = srcu_read_lock(kvm.srcu)
        return self.handle_exit(vcpu, exit_, pc)

    def kvm_arch_sync_dirty_log(self, kvm: Any, memslot: Any) -> None:
        """Flush the dirty pages the hardware may still cache (PML) to the bitmap."""
        hook = self.kvm_x86_op(kvm, "flush_log_dirty")
        if hook is not None:
            hook(kvm)

    def handle_exit(self, vcpu: Any, exit_: VmExit, pc: int) -> int:
        """``vmx_handle_exit`` (its PML part, :meth:`Vmx.vmx_handle_exit`, first),
        then the exit reason's handler."""
        self.vmx_handle_exit(vcpu, exit_.reason)
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
        elif exit_.reason == "vmlaunch":
            self.nested_vmx_run(vcpu, exit_.gpa)
            pc += 1
        elif exit_.reason == "vmexit":
            self.nested_vmx_vmexit(vcpu)
            pc += 1
        elif exit_.reason == "invept":
            self.handle_invept(vcpu)
            pc += 1
        return pc

    # -------------------------------------------------------------- cpuid
    # cpuid.c.  The CPUID entries are a tag in the model (an int the scenario
    # gives): equal tags are identical data.  What the data changes (reserved
    # bits, MAXPHYADDR, ...) is not modelled; the MMU context reset it
    # causes is.

    # Which KVM_SET_CPUID calls after the first KVM_RUN the version accepts:
    # "any" (until 5.16), "identical" (5.17: feb627e8d6f6 refused them all in
    # 5.16, c6617c61e8fe let identical data through).  The scenario format
    # rejects a scenario that asks for a refused one (see
    # tdpmmu.scenarios.format.check_for_kernel).
    set_cpuid_after_run = "any"

    def kvm_arch_vcpu_ioctl_set_cpuid2(self, vcpu: Any, cpuid: Any) -> int:
        """``kvm_arch_vcpu_ioctl``'s KVM_SET_CPUID2 case."""
        return self.kvm_vcpu_ioctl_set_cpuid2(vcpu, cpuid)

    def kvm_vcpu_ioctl_set_cpuid2(self, vcpu: Any, cpuid: Any) -> int:
        vcpu.cpuid = cpuid  # vcpu->arch.cpuid_entries
        self.kvm_vcpu_after_set_cpuid(vcpu)
        return 0

    def kvm_vcpu_after_set_cpuid(self, vcpu: Any) -> None:
        """5.10: the MMU context is reset (every root of both MMUs freed)."""
        self.kvm_mmu_reset_context(vcpu)

    # ------------------------------------------------------------- nested
    def nested_vmx_run(self, vcpu: Any, eptp: int) -> None:
        """VMLAUNCH/VMRESUME from L1 (vmcs12 checks left out)."""
        self.nested_vmx_enter_non_root_mode(vcpu, eptp)

    def nested_vmx_enter_non_root_mode(self, vcpu: Any, eptp: int) -> None:
        self.enter_guest_mode(vcpu)
        vcpu.nested_eptp = eptp
        self.prepare_vmcs02(vcpu)

    def enter_guest_mode(self, vcpu: Any) -> None:
        vcpu.guest_mode = 1

    def leave_guest_mode(self, vcpu: Any) -> None:
        vcpu.guest_mode = 0

    def prepare_vmcs02(self, vcpu: Any) -> None:
        """The MMU part: switch to guest_mmu, then ``nested_vmx_load_cr3`` of
        L2's CR3 with nested EPT (no pgd switch for CR3, ``kvm_init_mmu``)."""
        self.nested_ept_init_mmu_context(vcpu)
        self.nested_vmx_load_cr3(vcpu, 0, True)

    def nested_ept_init_mmu_context(self, vcpu: Any) -> None:
        WARN_ON(self.mmu_is_nested(vcpu))
        vcpu.mmu = vcpu.guest_mmu
        self.kvm_init_shadow_ept_mmu(vcpu, vcpu.nested_eptp << PAGE_SHIFT)

    def nested_ept_get_eptp(self, vcpu: Any) -> int:
        return vcpu.nested_eptp << PAGE_SHIFT

    def get_guest_pgd(self, vcpu: Any, mmu: Any) -> int:
        """``mmu->get_guest_pgd``: ``nested_ept_get_eptp`` for guest_mmu (the
        only MMU the model allocates shadow roots for)."""
        return self.nested_ept_get_eptp(vcpu)

    def nested_ept_uninit_mmu_context(self, vcpu: Any) -> None:
        vcpu.mmu = vcpu.root_mmu

    def nested_vmx_load_cr3(self, vcpu: Any, cr3: int, nested_ept: bool) -> int:
        """Without nested EPT the new CR3 is a pgd switch of the current MMU
        (on VM-exit: root_mmu and L1's CR3); then ``kvm_init_mmu``."""
        if not nested_ept:
            self.kvm_mmu_new_pgd(vcpu, cr3)
        self.kvm_init_mmu(vcpu)
        return 0

    def nested_vmx_vmexit(self, vcpu: Any) -> None:
        """The MMU part of a nested VM-exit (``load_vmcs12_host_state``):
        root_mmu again, L1's CR3 through the fast pgd switch; guest_mmu's
        root stays cached."""
        self.leave_guest_mode(vcpu)
        self.load_vmcs12_host_state(vcpu)

    def load_vmcs12_host_state(self, vcpu: Any) -> None:
        self.nested_ept_uninit_mmu_context(vcpu)
        self.nested_vmx_load_cr3(vcpu, 0, False)

    def handle_invept(self, vcpu: Any) -> None:
        """INVEPT from L1, global extent: every nested EPT root (they are all
        held through guest_mmu) is freed."""
        mmu = vcpu.guest_mmu
        roots_to_free = KVM_MMU_ROOTS_ALL  # VMX_EPT_EXTENT_GLOBAL
        if roots_to_free:
            self.kvm_mmu_free_roots(vcpu, mmu, roots_to_free)

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
            if op.kind in ("smi", "rsm", "vmexit", "invept"):
                return VmExit(op.kind), pc
            if op.kind == "vmlaunch":
                return VmExit(op.kind, op.gfn), pc
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
        # entry[1]: a write may use the entry (writable, and dirty cached: a
        # write through a clean entry walks to set the dirty bit).
        if entry is not None and (entry[1] or not write):
            self.guest_memory_access(vcpu, gfn, entry[0], write)
            return None
        if vcpu.mmu.root_hpa == INVALID_PAGE:
            raise Finding("BUG", f"vcpu{vcpu.vcpu_id} entered the guest without a root",
                          "vcpu_enter_guest")
        self.check_hardware_pfn(vcpu, vcpu.mmu.root_hpa >> PAGE_SHIFT)
        root = to_shadow_page(kvm, vcpu.mmu.root_hpa >> PAGE_SHIFT)
        # The walk reads the root's paging structure (root->root: the root
        # itself for the TDP MMU, its tree object for the legacy MMU).  An
        # access through a leaf whose Accessed bit is clear, or a write through
        # a clean writable one, needs a second step, the CPU's locked update of
        # the leaf (the A/D assist), which may write that leaf's word.
        #
        # A kick (an IPI) is taken at an instruction boundary, and a flush that
        # kicks waits for the vCPU to leave guest mode, so an instruction is
        # either done before the kicker goes on or starts after the exit.  The
        # model's walk and assist are two steps: a request pending at either
        # ends the instruction there (the walk changed nothing) and the vCPU
        # exits; the access runs again when it re-enters.
        assist_level = None
        while True:
            shared.hardware_walk_point(root.root, gfn, tlb, vcpu.requests, write_acc,
                                       assist_level)
            if vcpu.requests.value:
                return VmExit("kick")
            found = self.ept_walk(vcpu, root, gfn, write)
            if isinstance(found, VmExit):
                return found
            sp, level, spte = found
            if not ept_needs_ad_assist(spte, write):
                break
            if assist_level == level:
                spte = self.ept_set_ad_bits(vcpu, sp, level, gfn, spte, write)
                break
            assist_level = level  # the leaf changed level meanwhile: walk again
        pfn = spte_to_pfn(spte) + (gfn - round_gfn_for_level(gfn, level))
        tlb.entries[gfn] = (pfn, is_writable_pte(spte) and is_dirty_spte(spte))
        tlb.version += 1
        self.guest_memory_access(vcpu, gfn, pfn, write)
        return None

    def ept_walk(self, vcpu: Any, root: Any, gfn: int, write: bool) -> Any:
        """The hardware walk of ``gfn`` from ``root``: ``(page, level, leaf SPTE)``,
        or the EPT violation or misconfiguration it ends in."""
        kvm = vcpu.kvm
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
        return sp, level, spte

    def ept_set_ad_bits(self, vcpu: Any, sp: Any, level: int, gfn: int, spte: int,
                        write: bool) -> int:
        """The CPU's EPT A/D assist (SDM 29.3.5, "Accessed and Dirty Flags for
        EPT"): an access sets the leaf's Accessed bit, a write also its Dirty
        bit, and with PML on in the vCPU's VMCS a write that sets the Dirty bit
        logs the page's gpa in its PML buffer.  ``make_spte`` sets both bits of
        a writable SPTE it installs for an access; aging clears the Accessed
        bit, PML's hooks and 5.10-5.12's ``age_gfn_range`` the Dirty bit.

        Simplified: only the leaf's bits are set (the CPU also sets the
        Accessed bit of every paging-structure entry it walks, which KVM never
        reads).  The store is the hardware's, not KVM's: no SPTE tracepoint;
        the ``ept_ad_assist`` event tells the properties."""
        index = SHADOW_PT_INDEX(gfn, level)
        new_spte = spte | shadow_accessed_mask | (shadow_dirty_mask if write else 0)
        sp.spt[index] = new_spte
        shared.spte_word(sp, index).version += 1
        self.trace_event(vcpu.kvm, "ept_ad_assist", vcpu=vcpu,
                         gfn=round_gfn_for_level(gfn, level), level=level,
                         as_id=1 if vcpu.smm else 0, old_spte=spte, new_spte=new_spte)
        if write and not is_dirty_spte(spte) and vcpu.pml_enabled \
                and not vcpu.guest_mode:  # SECONDARY_EXEC_ENABLE_PML
            vcpu.pml_buffer.append(gfn << PAGE_SHIFT)
            self.trace_event(vcpu.kvm, "pml_logged", vcpu=vcpu, gfn=gfn)
        return new_spte

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
