"""Every guest write made while dirty logging is on shows in the next dirty-log read.

Logging is on for a slot from the moment the enabling ioctl returns.  A write
made before a ``KVM_GET_DIRTY_LOG`` starts must be in the gfns it returns; a
write made while the read is in progress may show in this read or the next.

With manual protect (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) a read does not clear
the bits: a write stays owed until a read reports its page or a
``KVM_CLEAR_DIRTY_LOG`` of its page returns (userspace copies the pages it
cleared after that, so it sees the write).

A read of a slot whose dirty logging is on cannot fail: ``kvm_get_dirty_log_protect``
(``virt/kvm/kvm_main.c``, every version) returns ``-ENOENT`` only when the
slot has no ``dirty_bitmap``, and the bitmap exists from the enabling ioctl
until logging is disabled or the slot deleted.  A failed read is judged
against the memslots at its start: if no memslot update was published since
(the same ``generation``, which every ``install_new_memslots`` increments),
the slot had its bitmap all along, and the read owed its gfns.

When the threads are done (before the VM is torn down), a write still owed
must be set in its slot's dirty bitmap, or the next ``KVM_GET_DIRTY_LOG``
misses it: checked by :meth:`DirtyLogComplete.at_end`, so that a write lost
without a later read in the scenario is judged too.  This is the contract
of 5.10's ``kvm_mmu_slot_apply_flags`` (``x86.c``): enabling
``KVM_MEM_LOG_DIRTY_PAGES`` write-protects the slot's SPTEs (without PML),
so that the first write to each page faults and ``mark_page_dirty`` (the
TDP MMU's ``handle_changed_spte_dirty_log`` when an SPTE becomes writable)
sets its bit; a read re-protects the pages whose bits it takes.

With PML (``[vm] pml``, 5.10/5.11's ``vmx.c``) enabling clears the slot's
dirty bits and a read clears those of the pages it takes, after which the
CPU logs a page's next write in the writing vCPU's PML buffer; the buffer
reaches the bitmap at the vCPU's next VM exit, and ``KVM_GET_DIRTY_LOG`` only
kicks the vCPUs before reading (``kvm_flush_pml_buffers``: "We only need to
kick vcpu out of guest mode here, as PML buffer is flushed at beginning of all
VMEXITs").  So a write whose page sits in a vCPU's unflushed PML buffer when a
read starts is owed to a later read, not to this one; it stays owed, and the
check at the end (every vCPU has exited by then) judges it.
"""

from __future__ import annotations

from typing import Any

from ..engine import report


class DirtyLogComplete:
    name = "dirty-log-complete"

    def __init__(self, kvm: Any) -> None:
        self.kvm = kvm
        self.logging: set[tuple[int, int]] = set()  # (as_id, slot id) with logging on
        self.pending: dict[tuple[int, int], dict[int, int]] = {}  # slot -> gfn -> step
        self.must: dict[tuple[int, int], set[int]] = {}
        # slot -> memslots generation at a read's start, if the slot had a bitmap then
        self.read_gen: dict[tuple[int, int], int | None] = {}
        self.in_pml: dict[int, set[int]] = {}  # vcpu id -> gfns in its unflushed PML buffer

    def _bitmap_generation(self, key: tuple[int, int]) -> int | None:
        """The memslots' generation if slot ``key`` has a dirty bitmap now, else
        None (read like a debugger: the event's own step ordered it)."""
        as_id, slot_id = key
        slots = self.kvm.memslots[as_id].value
        slot = slots.id_to_memslot(slot_id)
        if slot is None or slot.dirty_bitmap is None:
            return None
        return slots.generation

    def _slot_of(self, as_id: int, gfn: int) -> Any:
        # The guest write's own step declared a read of the memslots (see
        # shared.guest_write_accesses): the lookup belongs to that step.
        for slot in self.kvm.memslots[as_id].value.slots:
            if slot.contains(gfn):
                return slot
        return None

    def probe(self, event: str, f: dict[str, Any]) -> None:
        if event == "dirty_log_enabled":
            self.logging.add(f["key"])
            self.pending.setdefault(f["key"], {})
        elif event == "dirty_log_disabled":
            self.logging.discard(f["key"])
            self.pending.pop(f["key"], None)
        elif event == "guest_access" and f["write"]:
            slot = self._slot_of(f["as_id"], f["gfn"])
            if slot is not None and (slot.as_id, slot.id) in self.logging:
                self.pending[(slot.as_id, slot.id)].setdefault(f["gfn"], 0)
        elif event == "pml_logged":
            self.in_pml.setdefault(f["vcpu"].vcpu_id, set()).add(f["gfn"])
        elif event == "pml_flushed":
            self.in_pml.pop(f["vcpu"].vcpu_id, None)
        elif event == "dirty_log_read_start":
            in_pml = set().union(*self.in_pml.values())
            self.must[f["key"]] = set(self.pending.get(f["key"], {})) - in_pml
            self.read_gen[f["key"]] = self._bitmap_generation(f["key"])
        elif event == "dirty_log_read_failed":
            key = f["key"]
            self.must.pop(key, None)
            gen = self.read_gen.pop(key, None)
            if gen is not None and gen == self._bitmap_generation(key):
                report("property", f"{self.name}: KVM_GET_DIRTY_LOG on slot {key[1]} (as_id "
                       f"{key[0]}) failed although the slot had its dirty bitmap throughout "
                       "the ioctl (no memslot update since it started)",
                       "kvm_get_dirty_log_protect")
        elif event == "dirty_log_cleared":
            pending = self.pending.get(f["key"], {})
            for gfn in f["gfns"]:
                pending.pop(gfn, None)
        elif event == "dirty_log_returned":
            key = f["key"]
            got = set(f["gfns"])
            pending = self.pending.get(key, {})
            if not f["manual"]:
                for gfn in list(pending):
                    if gfn in got:
                        del pending[gfn]
            missed = sorted(g for g in self.must.pop(key, set()) if g not in got)
            for g in missed:
                pending.pop(g, None)
            if missed:
                gfns = ", ".join(f"{g:#x}" for g in missed)
                report("property", f"{self.name}: KVM_GET_DIRTY_LOG on slot {key[1]} "
                       f"(as_id {key[0]}) missed guest writes to gfn {gfns} made while "
                       "dirty logging was on", "kvm_vm_ioctl_get_dirty_log")

    def at_end(self) -> None:
        """Every write owed is in its slot's dirty bitmap (the next read would
        return it).  Runs when no thread is left, so no read is in progress."""
        kvm = self.kvm
        for key in sorted(self.logging):
            pending = self.pending.get(key)
            if not pending:
                continue
            as_id, slot_id = key
            slot = kvm.memslots[as_id].value.id_to_memslot(slot_id)
            if slot is None or slot.dirty_bitmap is None:
                continue  # deleted, or logging off: no later read returns anything
            missed = sorted(g for g in pending
                            if slot.contains(g) and not slot.dirty_bitmap[g - slot.base_gfn])
            if missed:
                gfns = ", ".join(f"{g:#x}" for g in missed)
                report("property", f"{self.name}: guest writes to gfn {gfns} made while dirty "
                       f"logging was on are not in slot {slot_id}'s (as_id {as_id}) dirty "
                       "bitmap: the next KVM_GET_DIRTY_LOG misses them",
                       "kvm_vm_ioctl_get_dirty_log")
