"""``virt/kvm/kvm_main.c`` at v5.10: memslot updates, the MMU notifier, the
dirty-log ioctl and VM teardown, as far as the TDP MMU is concerned.

Memslots are published with ``rcu_assign_pointer`` and freed after
``synchronize_srcu_expedited(&kvm->srcu)``; vCPUs hold ``kvm->srcu`` while
outside guest mode, so an update waits for every fault in flight.

Simplifications: a memslots generation goes up by one per install and per
address space, without KVM_MEMSLOT_GEN_UPDATE_IN_PROGRESS (so an MMIO SPTE
made during an update's grace period counts as current); the dirty ring, the
private memslots x86 deletes at VM destruction, and
``kvm_arch_mmu_notifier_invalidate_range`` are not modelled.
"""

from __future__ import annotations

from typing import Any

from ..kernel import (
    BUG_ON,
    mutex_lock,
    mutex_unlock,
    srcu_read_lock,
    srcu_read_unlock,
    synchronize_srcu_expedited,
)
from . import shared
from .mmu import KVM_MR_CREATE, KVM_MR_DELETE, KVM_MR_FLAGS_ONLY, KVM_MR_MOVE
from .mmu_lock import KVM_MMU_LOCK, KVM_MMU_UNLOCK
from .structs import (
    KVM_MEM_LOG_DIRTY_PAGES,
    KVM_MEMSLOT_INVALID,
    KVM_REQUEST_KICK,
    kvm_memory_slot,
    kvm_memslots,
)

__kernel_file__ = "virt/kvm/kvm_main.c"

BITS_PER_LONG = 64

# The vCPU ioctls the scenarios issue (include/uapi/linux/kvm.h names).
KVM_RUN = "KVM_RUN"
# Not an ioctl: what the guest makes its vCPU do inside KVM_RUN (INVPCID, a
# CR0/CR4 write, ...) that drops the vCPU's roots: ``kvm_mmu_unload``.
KVM_RUN_UNLOAD = "KVM_RUN(kvm_mmu_unload)"
KVM_SET_CPUID2 = "KVM_SET_CPUID2"


class KvmMain:
    """The generic KVM code the TDP MMU is driven by."""

    # ------------------------------------------------------------ knobs
    # Dirty-log enabling publishes the memslot flag, then write-protects
    # (v5.10); the what-if does it the other way round.
    dirty_log_flag_after_wrprot = False

    # ----------------------------------------------------------- vCPU ioctls
    def kvm_vcpu_ioctl(self, vcpu: Any, ioctl: str, *args: Any) -> int | None:
        """Every vCPU ioctl runs under ``vcpu->mutex`` (``mutex_lock_killable``
        in the kernel; the model has no signals), so one vCPU's ioctls, and
        the root changes they make, never overlap.  The model's vCPU ioctls:
        KVM_RUN, KVM_RUN standing in for a guest exit that unloads the
        vCPU's roots (:data:`KVM_RUN_UNLOAD`), and KVM_SET_CPUID2 (returns
        its result: 0, or -EINVAL for data 5.17+ refuses)."""
        mutex_lock(vcpu.mutex)
        if ioctl == KVM_RUN:
            self.kvm_arch_vcpu_ioctl_run(vcpu, *args)
        elif ioctl == KVM_RUN_UNLOAD:
            self.kvm_mmu_unload(vcpu)
        elif ioctl == KVM_SET_CPUID2:
            r = self.kvm_arch_vcpu_ioctl_set_cpuid2(vcpu, *args)
            mutex_unlock(vcpu.mutex)
            return r
        else:
            raise ValueError(f"kvm_vcpu_ioctl: {ioctl} is not modelled")
        mutex_unlock(vcpu.mutex)

    # ----------------------------------------------------------- memslots
    def _kvm_memslots(self, kvm: Any, as_id: int) -> kvm_memslots:
        """``__kvm_memslots``: an SRCU-protected pointer read."""
        return kvm.memslots[as_id].load()

    def _gfn_to_memslot(self, slots: kvm_memslots, gfn: int) -> kvm_memory_slot | None:
        for s in slots.slots:
            if s.contains(gfn):
                return s
        return None

    def kvm_vcpu_gfn_to_memslot(self, vcpu: Any, gfn: int) -> kvm_memory_slot | None:
        as_id = 1 if vcpu.smm else 0
        return self._gfn_to_memslot(self._kvm_memslots(vcpu.kvm, as_id), gfn)

    def kvm_memslots_generation(self, kvm: Any, vcpu: Any) -> int:
        as_id = 1 if vcpu is not None and vcpu.smm else 0
        return self._kvm_memslots(kvm, as_id).generation

    def kvm_vcpu_kick(self, vcpu: Any) -> None:
        """The IPI that makes a vCPU in guest mode exit.  Model: a bit of the
        vCPU's request word, which the guest checks at every instruction (see
        :func:`shared.tlb_lookup_point`) and the exit clears; a vCPU outside
        guest mode exits once more at its next instruction, which flushes an
        empty buffer."""
        if not vcpu.kvm.enable_pml:
            return  # an exit with nothing to do: only PML flushes at exit in the model
        shared.atomic_or(vcpu.requests, KVM_REQUEST_KICK, f"kvm_vcpu_kick(vcpu{vcpu.vcpu_id})")

    def kvm_vcpu_mark_page_dirty(self, vcpu: Any, gfn: int) -> None:
        self.mark_page_dirty_in_slot(vcpu.kvm, self.kvm_vcpu_gfn_to_memslot(vcpu, gfn), gfn)

    def mark_page_dirty_in_slot(self, kvm: Any, memslot: kvm_memory_slot | None,
                                gfn: int) -> None:
        if memslot is not None and memslot.dirty_bitmap is not None:
            rel_gfn = gfn - memslot.base_gfn
            # set_bit_le(): the manual-protect KVM_GET_DIRTY_LOG reads the
            # bitmap without mmu_lock, so the store is a visible one.
            shared.bitmap_point(memslot.dirty_bitmap, f"set_bit_le(dirty gfn {gfn:#x})", True)
            memslot.dirty_bitmap[rel_gfn] = 1

    def hva_to_pfn(self, kvm: Any, hva: int, write_fault: bool,
                   writable: bool) -> tuple[int, bool]:
        """The host page behind ``hva`` and whether it may be mapped writable.

        A write fault on a read-only host page (a KSM page, say) breaks COW as
        ``get_user_pages(FOLL_WRITE)`` does: the host gives the hva a private
        copy, and the mm runs the MMU-notifier invalidation around the change,
        which makes this fault retry.  (Simplification: the host side of the
        fault runs in the vCPU's thread, as it does in the kernel, but the
        page-table locking of the mm is not modelled.)
        """
        pfn, host_writable = kvm.mm.pte(hva).load()
        if write_fault and not host_writable:
            self.kvm_mmu_notifier_invalidate_range_start(kvm, hva, hva + 1)
            # The mm's side of the notifier contract, for the properties.
            self.trace_event(kvm, "invalidate_range_start_returned", start=hva, end=hva + 1)
            pfn, host_writable = kvm.mm.replace(hva, writable=True)
            self.trace_event(kvm, "invalidate_range_end_called", start=hva, end=hva + 1)
            self.kvm_mmu_notifier_invalidate_range_end(kvm, hva, hva + 1)
        return pfn, host_writable and writable

    def install_new_memslots(self, kvm: Any, as_id: int, slots: kvm_memslots) -> kvm_memslots:
        old = kvm.memslots[as_id].value
        slots.generation = old.generation + 1
        kvm.memslots[as_id].store(slots)  # rcu_assign_pointer
        synchronize_srcu_expedited(kvm.srcu)
        return old

    def kvm_dup_memslots(self, old: kvm_memslots) -> kvm_memslots:
        return kvm_memslots(generation=old.generation, slots=[s.copy() for s in old.slots])

    def update_memslots(self, slots: kvm_memslots, new: kvm_memory_slot, change: int) -> None:
        slots.slots = [s for s in slots.slots if s.id != new.id]
        if change != KVM_MR_DELETE:
            slots.slots.append(new)
            slots.slots.sort(key=lambda s: s.base_gfn)

    def kvm_set_memslot(self, kvm: Any, old: kvm_memory_slot | None, new: kvm_memory_slot,
                        as_id: int, change: int) -> int:
        slots = self.kvm_dup_memslots(kvm.memslots[as_id].value)
        if change in (KVM_MR_DELETE, KVM_MR_MOVE):
            # Hide the slot from vCPUs, then zap what maps it.
            slot = slots.id_to_memslot(old.id)
            slot.flags |= KVM_MEMSLOT_INVALID
            self.install_new_memslots(kvm, as_id, slots)
            self.kvm_arch_flush_shadow_memslot(kvm, slot)
            slots = self.kvm_dup_memslots(kvm.memslots[as_id].value)
        self.update_memslots(slots, new, change)
        if change == KVM_MR_FLAGS_ONLY and self.dirty_log_flag_after_wrprot:
            # What-if: write-protect before the flag is visible to faults.
            self.kvm_arch_commit_memory_region(kvm, old, new, change)
            self.install_new_memslots(kvm, as_id, slots)
            return 0
        self.install_new_memslots(kvm, as_id, slots)
        self.kvm_arch_commit_memory_region(kvm, old, new, change)
        return 0

    def kvm_arch_commit_memory_region(self, kvm: Any, old: Any, new: Any, change: int) -> None:
        self.kvm_mmu_slot_apply_flags(kvm, old, new, change)

    def _kvm_set_memory_region(self, kvm: Any, as_id: int, slot_id: int, flags: int,
                                 base_gfn: int, npages: int, userspace_addr: int,
                                 huge: bool = False) -> int:
        old = kvm.memslots[as_id].value.id_to_memslot(slot_id)
        if npages == 0:
            if old is None:
                return -22  # -EINVAL
            change = KVM_MR_DELETE
            new = old.copy()  # kvm_delete_memslot: a zeroed slot of the same id
            new.npages = 0
            new.flags = 0
        elif old is None:
            change = KVM_MR_CREATE
            new = kvm_memory_slot(id=slot_id, as_id=as_id, base_gfn=base_gfn, npages=npages,
                                  userspace_addr=userspace_addr, flags=flags, huge=huge)
        else:
            new = old.copy()
            new.flags = flags
            if base_gfn != old.base_gfn:
                change = KVM_MR_MOVE
                new.base_gfn = base_gfn
                new.rmap = {}  # kvm_arch_prepare_memory_region: new arch metadata
            elif flags != old.flags:
                change = KVM_MR_FLAGS_ONLY
            else:
                return 0
        if change in (KVM_MR_CREATE, KVM_MR_MOVE, KVM_MR_FLAGS_ONLY):
            if new.flags & KVM_MEM_LOG_DIRTY_PAGES and new.dirty_bitmap is None:
                new.dirty_bitmap = [0] * new.npages  # kvm_alloc_dirty_bitmap
            elif not new.flags & KVM_MEM_LOG_DIRTY_PAGES:
                new.dirty_bitmap = None
        return self.kvm_set_memslot(kvm, old, new, as_id, change)

    def kvm_set_memory_region(self, kvm: Any, as_id: int, slot_id: int, flags: int,
                              base_gfn: int, npages: int, userspace_addr: int,
                              huge: bool = False) -> int:
        mutex_lock(kvm.slots_lock)
        r = self._kvm_set_memory_region(kvm, as_id, slot_id, flags, base_gfn, npages,
                                          userspace_addr, huge)
        mutex_unlock(kvm.slots_lock)
        return r

    # ----------------------------------------------------------- dirty log
    def kvm_get_dirty_log_protect(self, kvm: Any, as_id: int, slot_id: int) -> list[int] | None:
        """The dirty gfns of a slot (None: -ENOENT, no dirty log).

        Without manual protect the bits are collected and cleared, and those
        pages write-protected again; with KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 the
        bitmap is only copied, and KVM_CLEAR_DIRTY_LOG re-protects.  (With PML
        the collected pages get their dirty bits cleared instead: see
        :mod:`.vmx`.)
        """
        slot = kvm.memslots[as_id].value.id_to_memslot(slot_id)
        if slot is None or slot.dirty_bitmap is None:
            return None
        self.kvm_arch_sync_dirty_log(kvm, slot)
        if kvm.manual_dirty_log_protect:
            # Only a copy for userspace, read without mmu_lock.
            shared.bitmap_point(slot.dirty_bitmap, "copy dirty_bitmap", False)
            return [slot.base_gfn + i for i, bit in enumerate(slot.dirty_bitmap) if bit]
        return self.take_dirty_bits_and_reprotect(kvm, slot, range(slot.npages))

    def take_dirty_bits_and_reprotect(self, kvm: Any, slot: Any, pages: Any) -> list[int]:
        """The loop get_dirty_log and clear_dirty_log share: under ``mmu_lock``,
        per long of the bitmap, atomically take the set bits among ``pages``
        (``xchg`` / ``atomic_long_fetch_andnot``) and write-protect those pages
        again; flush after dropping the lock.  Returns the gfns taken."""
        wanted = set(pages)
        taken = []
        flush = False
        KVM_MMU_LOCK(kvm)
        for offset in range(0, slot.npages, BITS_PER_LONG):
            mask = 0
            for i in range(offset, min(offset + BITS_PER_LONG, slot.npages)):
                if i in wanted and slot.dirty_bitmap[i]:
                    slot.dirty_bitmap[i] = 0
                    mask |= 1 << (i - offset)
                    taken.append(slot.base_gfn + i)
            if mask:
                flush = True
                self.kvm_arch_mmu_enable_log_dirty_pt_masked(kvm, slot, offset, mask)
        KVM_MMU_UNLOCK(kvm)
        if flush:
            self.kvm_arch_flush_remote_tlbs_memslot(kvm, slot)
        return taken

    def kvm_vm_ioctl_get_dirty_log(self, kvm: Any, as_id: int, slot_id: int) -> list[int] | None:
        mutex_lock(kvm.slots_lock)
        dirty = self.kvm_get_dirty_log_protect(kvm, as_id, slot_id)
        mutex_unlock(kvm.slots_lock)
        return dirty

    def kvm_clear_dirty_log_protect(self, kvm: Any, as_id: int, slot_id: int,
                                    pages: list[int]) -> list[int] | None:
        """KVM_CLEAR_DIRTY_LOG: clear the dirty bits of the slot's ``pages`` (the
        bitmap userspace passes) and write-protect the ones that were set.
        Returns the gfns whose bits were set (None: -ENOENT/-EINVAL)."""
        slot = kvm.memslots[as_id].value.id_to_memslot(slot_id)
        if slot is None or slot.dirty_bitmap is None or not kvm.manual_dirty_log_protect:
            return None
        if any(not 0 <= i < slot.npages for i in pages):
            return None
        self.kvm_arch_sync_dirty_log(kvm, slot)
        return self.take_dirty_bits_and_reprotect(kvm, slot, pages)

    def kvm_vm_ioctl_clear_dirty_log(self, kvm: Any, as_id: int, slot_id: int,
                                     pages: list[int]) -> list[int] | None:
        mutex_lock(kvm.slots_lock)
        cleared = self.kvm_clear_dirty_log_protect(kvm, as_id, slot_id, pages)
        mutex_unlock(kvm.slots_lock)
        return cleared

    # -------------------------------------------------------- MMU notifier
    def mmu_notifier_retry(self, kvm: Any, mmu_seq: int) -> bool:
        if kvm.mmu_notifier_count:
            return True
        return kvm.mmu_notifier_seq.value != mmu_seq

    def kvm_mmu_notifier_invalidate_range_start(self, kvm: Any, start: int, end: int) -> None:
        idx = srcu_read_lock(kvm.srcu)
        KVM_MMU_LOCK(kvm)
        # Faults must not install SPTEs from the old pfns until _end.
        kvm.mmu_notifier_count += 1
        need_tlb_flush = self.kvm_unmap_hva_range(kvm, start, end)
        need_tlb_flush |= kvm.tlbs_dirty
        if need_tlb_flush:
            self.kvm_flush_remote_tlbs(kvm)
        KVM_MMU_UNLOCK(kvm)
        srcu_read_unlock(kvm.srcu, idx)

    def kvm_mmu_notifier_invalidate_range_end(self, kvm: Any, start: int, end: int) -> None:
        KVM_MMU_LOCK(kvm)
        # Bump the sequence before dropping the count, so a fault that looked
        # up a pfn during the invalidation retries.
        kvm.mmu_notifier_seq.store(kvm.mmu_notifier_seq.value + 1)
        kvm.mmu_notifier_count -= 1
        self.trace_event(kvm, "invalidate_range_end", start=start, end=end)
        KVM_MMU_UNLOCK(kvm)
        BUG_ON(kvm.mmu_notifier_count < 0)

    def kvm_mmu_notifier_change_pte(self, kvm: Any, address: int, pte: Any) -> None:
        idx = srcu_read_lock(kvm.srcu)
        KVM_MMU_LOCK(kvm)
        kvm.mmu_notifier_seq.store(kvm.mmu_notifier_seq.value + 1)
        if self.kvm_set_spte_hva(kvm, address, pte):
            self.kvm_flush_remote_tlbs(kvm)
        KVM_MMU_UNLOCK(kvm)
        srcu_read_unlock(kvm.srcu, idx)

    def kvm_mmu_notifier_clear_flush_young(self, kvm: Any, start: int, end: int) -> int:
        idx = srcu_read_lock(kvm.srcu)
        KVM_MMU_LOCK(kvm)
        young = self.kvm_age_hva(kvm, start, end)
        if young:
            self.kvm_flush_remote_tlbs(kvm)
        KVM_MMU_UNLOCK(kvm)
        srcu_read_unlock(kvm.srcu, idx)
        return young

    def kvm_mmu_notifier_test_young(self, kvm: Any, address: int) -> int:
        idx = srcu_read_lock(kvm.srcu)
        KVM_MMU_LOCK(kvm)
        young = self.kvm_test_age_hva(kvm, address)
        KVM_MMU_UNLOCK(kvm)
        srcu_read_unlock(kvm.srcu, idx)
        return young

    def kvm_mmu_notifier_release(self, kvm: Any) -> None:
        idx = srcu_read_lock(kvm.srcu)
        self.kvm_arch_flush_shadow_all(kvm)
        srcu_read_unlock(kvm.srcu, idx)

    # -------------------------------------------------------------- teardown
    def kvm_destroy_vm(self, kvm: Any) -> None:
        """The VM's last reference is gone: every vCPU thread has left KVM_RUN."""
        kvm.users_count = 0  # kvm_put_kvm's refcount_dec_and_test
        self.kvm_mmu_notifier_release(kvm)  # mmu_notifier_unregister -> ->release
        # The mm's side of the notifier contract, for the properties.
        self.trace_event(kvm, "mmu_notifier_release_returned")
        self.kvm_arch_destroy_vm(kvm)
        kvm.destroyed = True
        self.trace_event(kvm, "vm_destroyed")

    def kvm_arch_destroy_vm(self, kvm: Any) -> None:
        self.kvm_free_vcpus(kvm)
        self.kvm_mmu_uninit_vm(kvm)

    def kvm_free_vcpus(self, kvm: Any) -> None:
        for vcpu in kvm.vcpus:
            self.kvm_unload_vcpu_mmu(vcpu)
        for vcpu in kvm.vcpus:
            self.kvm_mmu_destroy(vcpu)

    def kvm_unload_vcpu_mmu(self, vcpu: Any) -> None:
        self.kvm_mmu_unload(vcpu)

    # ------------------------------------------------------------ tracepoints
    def trace_event(self, kvm: Any, name: str, **fields: Any) -> None:
        """A tracepoint: the registered probes (the properties) see the event."""
        for probe in kvm.probes:
            probe(name, fields)


__all__ = ["KVM_MR_CREATE", "KVM_MR_DELETE", "KVM_MR_FLAGS_ONLY", "KVM_MR_MOVE", "KvmMain"]
