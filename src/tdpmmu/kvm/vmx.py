"""``vmx.c``'s Page Modification Logging (PML) at v5.10/v5.11: dirty logging
by the EPT dirty bit instead of write protection.

With the ``kvm_intel`` module parameter ``pml`` (``enable_pml``, 1 on every
CPU that has PML, with EPT and its A/D bits) ``hardware_setup`` keeps four
``kvm_x86_ops`` hooks that ``x86.c``, ``mmu.c`` and ``kvm_main.c`` call where
dirty logging starts, stops and is read; without it it sets them to NULL and
dirty logging write-protects (:class:`~.mmu.Mmu`).  In the model the
parameter is per VM (``kvm.enable_pml``, from the scenario's ``[vm] pml``;
one VM per run, like ``nx_huge_pages``) and :meth:`Vmx.kvm_x86_op` returns
a hook or None as ``hardware_setup`` leaves it.

The hardware side (``guest_access`` in :mod:`.x86`): a guest write through
a writable SPTE whose dirty bit is clear sets the bit in the SPTE and, on a
CPU with PML on, appends the page's gpa to the vCPU's PML buffer; a TLB entry
caches whether the bit was set, so a write through an entry cached with the
bit set neither writes the SPTE nor logs (hence the TLB flushes after
clearing dirty bits).  ``vmx_handle_exit`` empties the buffer into the dirty
bitmap at every VM exit (``vmx_flush_pml_buffer``), and ``KVM_GET_DIRTY_LOG``
only kicks the vCPUs out of guest mode before it reads the bitmap
(``kvm_flush_pml_buffers``), without waiting for their exits.

Simplified: the buffer never fills (512 entries; the model's guests write a
few pages), so ``EXIT_REASON_PML_FULL`` is not modelled; L2 makes no
accesses (PML is off while L2 runs, ``!is_guest_mode``); the legacy MMU's
rmap walks that clear and set dirty bits (``__rmap_clear_dirty``,
``__rmap_set_dirty``) are not modelled, so a scenario asks for PML only with
the TDP MMU (see :func:`tdpmmu.checker.build_model`).
"""

from __future__ import annotations

from typing import Any

from ..kernel import WARN_ON
from . import shared
from .spte import PAGE_SHIFT, PAGE_SIZE
from .structs import KVM_REQUEST_KICK

__kernel_file__ = "arch/x86/kvm/vmx/vmx.c"

PML_ENTITY_NUM = 512  # entries of a PML buffer


class Vmx:
    """VMX's PML hooks and buffer (``arch/x86/kvm/vmx/vmx.c``, v5.10/v5.11)."""

    # How dirty logging reaches PML at this version: "x86_ops" (5.10/5.11: the
    # kvm_x86_ops hooks below), "cpu_dirty_log_size" (5.12+, see V5_12); a
    # class whose PML paths the model does not have says None, and a scenario
    # asking for PML is refused on it.
    pml_dirty_logging: str | None = "x86_ops"

    def vmx_secondary_exec_control_pml(self, vcpu: Any) -> bool:
        """Whether a new vCPU's VMCS has PML on: with ``enable_pml`` (5.10/5.11)."""
        return vcpu.kvm.enable_pml

    def vmx_handle_exit(self, vcpu: Any, reason: str) -> None:
        """The PML part of the top of ``vmx_handle_exit``: every exit empties
        the buffer.  Model: an exit for a kick also takes the IPI (see
        :meth:`~.kvm_main.KvmMain.kvm_vcpu_kick`)."""
        if not vcpu.kvm.enable_pml:
            return
        self.take_kick_ipi(vcpu, reason)
        self.vmx_flush_pml_buffer(vcpu)

    def take_kick_ipi(self, vcpu: Any, reason: str) -> None:
        """Model only: an exit for a kick takes ``kvm_vcpu_kick``'s IPI (the bit
        it set in the request word), so the next entry does not exit again."""
        if reason == "kick":
            shared.test_and_clear(vcpu.requests, KVM_REQUEST_KICK,
                                  f"vcpu{vcpu.vcpu_id} takes the kick IPI")

    def kvm_check_cpu_dirty_logging_request(self, vcpu: Any) -> None:
        """5.12+ check KVM_REQ_UPDATE_CPU_DIRTY_LOGGING here; 5.10/5.11 have no
        such request (PML is on for the vCPU's life)."""

    def kvm_x86_op(self, kvm: Any, name: str) -> Any:
        """``kvm_x86_ops.<name>`` as ``hardware_setup`` left it: a PML hook is
        NULL (None) unless ``enable_pml``."""
        if not kvm.enable_pml:
            return None
        return {
            "slot_enable_log_dirty": self.vmx_slot_enable_log_dirty,
            "slot_disable_log_dirty": self.vmx_slot_disable_log_dirty,
            "flush_log_dirty": self.vmx_flush_log_dirty,
            "enable_log_dirty_pt_masked": self.vmx_enable_log_dirty_pt_masked,
        }[name]

    def vmx_slot_enable_log_dirty(self, kvm: Any, slot: Any) -> None:
        """Logging starts: clear the leaves' dirty bits (PML logs the next write of
        each page) and write-protect huge leaves (split on their first write).
        ``kvm_dirty_log_manual_protect_and_init_set`` is never true in the model
        (KVM_DIRTY_LOG_INITIALLY_SET is not modelled)."""
        self.kvm_mmu_slot_leaf_clear_dirty(kvm, slot)
        self.kvm_mmu_slot_largepage_remove_write_access(kvm, slot)

    def vmx_slot_disable_log_dirty(self, kvm: Any, slot: Any) -> None:
        """Logging stops: set every dirty bit, so that PML logs nothing more."""
        self.kvm_mmu_slot_set_dirty(kvm, slot)

    def vmx_flush_log_dirty(self, kvm: Any) -> None:
        self.kvm_flush_pml_buffers(kvm)

    def vmx_enable_log_dirty_pt_masked(self, kvm: Any, memslot: Any, offset: int,
                                       mask: int) -> None:
        self.kvm_mmu_clear_dirty_pt_masked(kvm, memslot, offset, mask)

    def kvm_flush_pml_buffers(self, kvm: Any) -> None:
        """Kick every vCPU out of guest mode: each exit flushes its buffer.  The
        kick does not wait for the exit."""
        for vcpu in kvm.vcpus:
            self.kvm_vcpu_kick(vcpu)

    def vmx_flush_pml_buffer(self, vcpu: Any) -> None:
        """Mark the pages the vCPU's PML buffer logged dirty, then empty it."""
        if not vcpu.pml_buffer:
            return
        logged, vcpu.pml_buffer = vcpu.pml_buffer, []
        for gpa in logged:
            WARN_ON(gpa & (PAGE_SIZE - 1))
            self.kvm_vcpu_mark_page_dirty(vcpu, gpa >> PAGE_SHIFT)
        self.trace_event(vcpu.kvm, "pml_flushed", vcpu=vcpu)
