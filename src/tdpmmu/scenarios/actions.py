"""What each scenario action does: the ioctls, host events and vCPU runs, as
calls into a kernel version."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..engine import READ, mark, visible
from ..kernel import synchronize_rcu
from ..kvm import shared
from ..kvm.kvm_main import KVM_RUN, KVM_RUN_UNLOAD, KVM_SET_CPUID2
from ..kvm.structs import KVM_MEM_LOG_DIRTY_PAGES
from ..kvm.x86 import GuestOp
from .format import Action


class World:
    """One execution's state: the kernel version's code, the VM, its properties."""

    def __init__(self, k: Any, kvm: Any, props: Any) -> None:
        self.k = k
        self.kvm = kvm
        self.props = props
        self.dirty_reads: list[tuple[int, list[int]]] = []


def userspace_memslot(world: World, a: Action) -> Any:
    """The memslot an ioctl names, or None: then the ioctl fails with -EINVAL
    (in some interleavings another thread may have deleted it)."""
    slots = world.kvm.memslots[a.args.get("as_id", 0)].load()
    slot = slots.id_to_memslot(a.args["slot"])
    if slot is None:
        mark(f"{a.op}: no memslot {a.args['slot']}: -EINVAL")
    return slot


def do_vcpu_run(world: World, a: Action) -> None:
    vcpu = world.kvm.vcpus[a.args["vcpu"]]
    program = [GuestOp(kind, gfn) for kind, gfn in a.args["guest"]]
    world.k.kvm_vcpu_ioctl(vcpu, KVM_RUN, program)


def do_vcpu_unload(world: World, a: Action) -> None:
    world.k.kvm_vcpu_ioctl(world.kvm.vcpus[a.args["vcpu"]], KVM_RUN_UNLOAD)


def do_set_cpuid(world: World, a: Action) -> None:
    r = world.k.kvm_vcpu_ioctl(world.kvm.vcpus[a.args["vcpu"]], KVM_SET_CPUID2, a.args["cpuid"])
    if r:
        mark(f"{a.op}: {r}")


def do_set_nx_huge_pages(world: World, a: Action) -> None:
    """The host writes /sys/module/kvm/parameters/nx_huge_pages."""
    world.k.set_nx_huge_pages(world.kvm, a.args["value"])


def do_memslot_create(world: World, a: Action) -> None:
    args = a.args
    flags = KVM_MEM_LOG_DIRTY_PAGES if args["log_dirty"] else 0
    if args["huge"]:
        world.kvm.mm.map_huge(args["hva"], args["npages"])
    for hva in range(args["hva"], args["hva"] + args["npages"]):
        world.kvm.mm.pte(hva)
    world.k.kvm_set_memory_region(world.kvm, args["as_id"], args["slot"], flags,
                                  args["base_gfn"], args["npages"], args["hva"], args["huge"])
    if args["log_dirty"]:
        slot = userspace_memslot(world, a)
        if slot is not None:
            _observe_slot(world, slot, "dirty_log_enabled")


def do_memslot_delete(world: World, a: Action) -> None:
    slot = userspace_memslot(world, a)
    if slot is None:
        return
    world.k.kvm_set_memory_region(world.kvm, slot.as_id, slot.id, slot.flags, slot.base_gfn,
                                  0, slot.userspace_addr)
    _slot_removed(world, slot, "KVM_MR_DELETE")


def do_memslot_move(world: World, a: Action) -> None:
    slot = userspace_memslot(world, a)
    if slot is None:
        return
    world.k.kvm_set_memory_region(world.kvm, slot.as_id, slot.id, slot.flags,
                                  a.args["base_gfn"], slot.npages, slot.userspace_addr)
    _slot_removed(world, slot, "KVM_MR_MOVE")


def _slot_removed(world: World, slot: Any, what: str) -> None:
    """The ioctl that deleted or moved ``slot`` (as it was before) returned."""
    world.k.trace_event(world.kvm, "memslot_removed", as_id=slot.as_id, slot=slot.id,
                        base_gfn=slot.base_gfn, npages=slot.npages, what=what)


def _observe_slot(world: World, slot: Any, event: str, **fields: Any) -> None:
    """A property event about a memslot's pages, ordered against guest writes."""
    kvm = world.kvm
    ghosts = [kvm.ghost(slot.as_id, g) for g in range(slot.base_gfn, slot.base_gfn + slot.npages)]
    shared.ghost_point(ghosts, f"({event.replace('_', ' ')})")
    world.k.trace_event(kvm, event, key=(slot.as_id, slot.id), **fields)


def do_dirty_log_enable(world: World, a: Action) -> None:
    slot = userspace_memslot(world, a)
    if slot is None:
        return
    world.k.kvm_set_memory_region(world.kvm, slot.as_id, slot.id,
                                  slot.flags | KVM_MEM_LOG_DIRTY_PAGES, slot.base_gfn,
                                  slot.npages, slot.userspace_addr)
    _observe_slot(world, slot, "dirty_log_enabled")


def do_dirty_log_disable(world: World, a: Action) -> None:
    slot = userspace_memslot(world, a)
    if slot is None:
        return
    _observe_slot(world, slot, "dirty_log_disabled")
    world.k.kvm_set_memory_region(world.kvm, slot.as_id, slot.id,
                                  slot.flags & ~KVM_MEM_LOG_DIRTY_PAGES, slot.base_gfn,
                                  slot.npages, slot.userspace_addr)


def do_get_dirty_log(world: World, a: Action) -> None:
    slot = userspace_memslot(world, a)
    if slot is None:
        return
    _observe_slot(world, slot, "dirty_log_read_start")
    gfns = world.k.kvm_vm_ioctl_get_dirty_log(world.kvm, slot.as_id, slot.id)
    if gfns is None:
        mark(f"{a.op}: slot {slot.id} has no dirty log: -ENOENT")
        world.k.trace_event(world.kvm, "dirty_log_read_failed", key=(slot.as_id, slot.id))
        return
    world.dirty_reads.append((slot.id, gfns))
    _observe_slot(world, slot, "dirty_log_returned", gfns=gfns,
                  manual=world.kvm.manual_dirty_log_protect)


def do_clear_dirty_log(world: World, a: Action) -> None:
    """KVM_CLEAR_DIRTY_LOG as userspace uses it: clear (and re-protect) the pages
    of the range that the last KVM_GET_DIRTY_LOG of the slot reported."""
    slot = userspace_memslot(world, a)
    if slot is None:
        return
    first = a.args["first"]
    npages = a.args["npages"] if a.args["npages"] else slot.npages - first
    reported = next((gfns for sid, gfns in reversed(world.dirty_reads) if sid == slot.id), [])
    mask = [g - slot.base_gfn for g in reported if first <= g - slot.base_gfn < first + npages]
    cleared = world.k.kvm_vm_ioctl_clear_dirty_log(world.kvm, slot.as_id, slot.id, mask)
    if cleared is None:
        mark(f"{a.op}: invalid for slot {slot.id}: -EINVAL")
        return
    # Userspace copies the pages it cleared once the ioctl returns.
    _observe_slot(world, slot, "dirty_log_cleared", gfns=[slot.base_gfn + i for i in mask])


def _unregistered(world: World) -> bool:
    """After kvm_destroy_vm the mm's events no longer reach KVM
    (mmu_notifier_unregister): the host side of the event happens alone."""
    return world.kvm.destroyed


def do_invalidate(world: World, a: Action) -> None:
    kvm, k = world.kvm, world.k
    start, end = a.args["hva"], a.args["hva"] + a.args["npages"]
    if _unregistered(world):
        for hva in range(start, end):
            kvm.mm.replace(hva, writable=True)
        return
    k.kvm_mmu_notifier_invalidate_range_start(kvm, start, end)
    k.trace_event(kvm, "invalidate_range_start_returned", start=start, end=end)
    for hva in range(start, end):  # the host moves the pages to new frames
        kvm.mm.replace(hva, writable=True)
    k.trace_event(kvm, "invalidate_range_end_called", start=start, end=end)
    k.kvm_mmu_notifier_invalidate_range_end(kvm, start, end)


def do_change_pte(world: World, a: Action) -> None:
    kvm, k = world.kvm, world.k
    hva = a.args["hva"]
    if _unregistered(world):
        kvm.mm.replace(hva, writable=False)
        return
    k.kvm_mmu_notifier_invalidate_range_start(kvm, hva, hva + 1)
    k.trace_event(kvm, "invalidate_range_start_returned", start=hva, end=hva + 1)
    new = kvm.mm.replace(hva, writable=False)  # KSM merges it into a read-only page
    # From 6.10 the mm has no .change_pte() notifier: the pair above is all.
    if getattr(k, "has_change_pte_notifier", True):
        k.kvm_mmu_notifier_change_pte(kvm, hva, new)
    k.trace_event(kvm, "invalidate_range_end_called", start=hva, end=hva + 1)
    k.kvm_mmu_notifier_invalidate_range_end(kvm, hva, hva + 1)


def do_age(world: World, a: Action) -> None:
    if _unregistered(world):
        return
    k, kvm = world.k, world.kvm
    start, end = a.args["hva"], a.args["hva"] + a.args["npages"]
    k.trace_event(kvm, "aging_called", start=start, end=end, call=id(a))
    young = k.kvm_mmu_notifier_clear_flush_young(kvm, start, end)
    k.trace_event(kvm, "aging_returned", start=start, end=end, call=id(a), young=young,
                  what="clear_flush_young")


def do_test_age(world: World, a: Action) -> None:
    if _unregistered(world):
        return
    k, kvm = world.k, world.kvm
    hva = a.args["hva"]
    k.trace_event(kvm, "aging_called", start=hva, end=hva + 1, call=id(a))
    young = k.kvm_mmu_notifier_test_young(kvm, hva)
    k.trace_event(kvm, "aging_returned", start=hva, end=hva + 1, call=id(a), young=young,
                  what="test_young")


def do_zap_all(world: World, a: Action) -> None:
    if _unregistered(world):
        return
    world.k.kvm_arch_flush_shadow_all(world.kvm)


def do_zap_gfn_range(world: World, a: Action) -> None:
    start, end = a.args["base_gfn"], a.args["base_gfn"] + a.args["npages"]
    call = id(a)  # one zap_gfn_range action runs once per execution
    world.k.trace_event(world.kvm, "zap_gfn_range_called", start=start, end=end, call=call)
    world.k.kvm_zap_gfn_range(world.kvm, start, end)
    world.k.trace_event(world.kvm, "zap_gfn_range_returned", start=start, end=end, call=call)


def do_destroy_vm(world: World, a: Action) -> None:
    kvm = world.kvm
    running = kvm.vcpu_threads_running
    # The VM goes away when its last file reference does: after every thread
    # holding its fd (a vCPU thread once it left KVM_RUN) closed it.
    visible("wait for vCPU threads to exit", ((running, READ),),
            lambda: running.value == 0, waits_for="vCPU threads to exit")
    world.k.kvm_destroy_vm(kvm)


def do_rcu_grace_period(world: World, a: Action) -> None:
    """Another CPU of the host completes an RCU grace period and runs the
    callbacks queued before it (the kernel runs them asynchronously, in
    softirq context; the model's callbacks run only where a grace period
    completes, so a scenario says where one may)."""
    synchronize_rcu()


ACTIONS: dict[str, Callable[[World, Action], None]] = {
    "vcpu_run": do_vcpu_run,
    "vcpu_unload": do_vcpu_unload,
    "memslot_create": do_memslot_create,
    "memslot_delete": do_memslot_delete,
    "memslot_move": do_memslot_move,
    "dirty_log_enable": do_dirty_log_enable,
    "dirty_log_disable": do_dirty_log_disable,
    "get_dirty_log": do_get_dirty_log,
    "clear_dirty_log": do_clear_dirty_log,
    "invalidate": do_invalidate,
    "change_pte": do_change_pte,
    "age": do_age,
    "test_age": do_test_age,
    "zap_all": do_zap_all,
    "zap_gfn_range": do_zap_gfn_range,
    "destroy_vm": do_destroy_vm,
    "rcu_grace_period": do_rcu_grace_period,
    "set_cpuid": do_set_cpuid,
    "set_nx_huge_pages": do_set_nx_huge_pages,
}
