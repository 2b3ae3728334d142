"""Work queues (kernel/workqueue.c): ``alloc_workqueue``, ``queue_work``, flushes, workers.

A ``work_struct`` carries the kernel's PENDING bit: ``queue_work`` sets it and
queues the item unless it was already set (then it returns false); a worker
clears it just before calling the item's function, so an item may be queued
again while it runs.  Work runs on *worker* threads, which are model threads:
a scenario that uses work queues lists one or more :func:`kworker` threads
among its threads, and the checker interleaves the items they run with
everything else.  The workers of an execution form one pool that serves every
queue allocated in it (the kernel's unbound pools are shared the same way);
``max_active`` is not modelled: as many items of a queue run at once as there
are idle workers.

A worker with nothing to do waits *idle*: an execution may end while its
workers wait for work (the engine does not call that a deadlock), whereas a
worker blocked anywhere else (a lock, a flush) is part of a deadlock as any
thread is.

Flushing: ``flush_workqueue`` waits for every item queued on the queue before
it was called (not for items queued later).  ``drain_workqueue`` flushes until
the queue is empty, and while it drains, ``queue_work`` from anything but the
queue's own items is the kernel's ``WARN_ON_ONCE`` and the item is dropped
(left PENDING, never run).  ``destroy_workqueue`` drains, then WARNs and
leaves the queue alone if it is still busy ("has the following busy pwq"),
else frees it after an RCU grace period (``rcu_free_wq``), so a later
``queue_work`` is a KASAN use-after-free.

Lockdep: as in the kernel, a queue and each item have a lockdep map.  A
worker holds the queue's and the item's map while the item runs, and a flush
takes the queue's map, so flushing while holding a lock that an item of the
queue takes is "possible circular locking dependency detected", and flushing a
queue from one of its own items is recursive locking -- in any execution that
shows both halves, even one that does not deadlock.  An item that returns
with a lock held or inside an RCU read-side section is "BUG: workqueue leaked
lock or atomic".  A ``WQ_MEM_RECLAIM`` item flushing a queue without
``WQ_MEM_RECLAIM`` is the WARN of ``check_flush_dependency``.

Outside model threads (setup, the check after an execution) nothing can wait:
``flush_workqueue``, ``drain_workqueue`` and ``destroy_workqueue`` run the
queue's pending items at once, in order, as ``rcu_barrier`` runs pending RCU
callbacks there.

Simplification: ``queue_work`` is one visible operation (the kernel's
``test_and_set_bit`` of PENDING, then the insertion under the pool lock).  A
flush or a second ``queue_work`` between the two sees the same as one just
before the insertion or just after the whole call, so no outcome is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..engine import runtime
from ..engine.access import READ, WRITE
from ..engine.runtime import Finding, current_thread, visible
from . import context, lockdep, sched
from .bug import warn_at
from .rcu import call_rcu, rcu_head
from .slab import kfree, kzalloc

runtime.hide_frames_of(__file__)

__kernel_file__ = "kernel/workqueue.c"

# alloc_workqueue() flags (include/linux/workqueue.h); only WQ_MEM_RECLAIM changes behaviour.
WQ_UNBOUND = 1 << 1
WQ_FREEZABLE = 1 << 2
WQ_MEM_RECLAIM = 1 << 3
WQ_HIGHPRI = 1 << 4
WQ_CPU_INTENSIVE = 1 << 5
__WQ_DRAINING = 1 << 16

_POOL = "workqueue.pool"


class lockdep_map:
    """A lockdep class without a lock (``lock_map_acquire``): a queue's or an item's.

    Holding one is not atomic context: work items and flushers may sleep.
    """

    __slots__ = ("name", "__weakref__")
    sleeping = True

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"lockdep_map({self.name})"


def _lock_map_acquire(t: Any, m: lockdep_map) -> None:
    held = t.local.get(lockdep.HELD)
    if held:
        lockdep.check_acquire(t, held, m, False)
    lockdep.acquired(t, m, False)


def _lock_map_release(t: Any, m: lockdep_map) -> None:
    lockdep.released(t, m, False)


class work_struct:
    """A work item: the PENDING bit, the function, and the queue it was last queued on."""

    __slots__ = ("owner", "func", "pending", "wq", "lockdep_map", "version", "__weakref__")
    # container_of arithmetic, and what a worker's idle wait may read after a free.
    __kasan_ignore__ = frozenset({"owner", "version"})
    __kasan_embedded_in_owner__ = True

    def __init__(self, owner: Any = None, func: Callable[[work_struct], Any] | None = None
                 ) -> None:
        self.owner = owner  # the struct embedding the item (container_of)
        self.func = func
        self.pending = False  # WORK_STRUCT_PENDING_BIT
        self.wq: workqueue_struct | None = None
        self.lockdep_map = lockdep_map(f"(work_completion)({getattr(func, '__name__', '?')})")
        self.version = 0

    def __repr__(self) -> str:
        return f"work_struct({getattr(self.func, '__name__', None)})"


def INIT_WORK(work: work_struct, func: Callable[[work_struct], Any]) -> None:
    """Initialise ``work`` to run ``func(work)``: not pending."""
    work.func = func
    work.pending = False
    work.lockdep_map = lockdep_map(f"(work_completion)({getattr(func, '__name__', '?')})")


def work_pending(work: work_struct) -> bool:
    """Is the PENDING bit set (a visible READ of the item)?"""
    if current_thread() is not None:
        visible("work_pending", ((work, READ),))
    return work.pending


class _Item:
    """One queueing of an item: its sequence number on the queue, for flushes."""

    __slots__ = ("work", "wq", "seq")

    def __init__(self, work: work_struct, wq: workqueue_struct, seq: int) -> None:
        self.work = work
        self.wq = wq
        self.seq = seq


class workqueue_struct:
    """A work queue: its name, flags, the items queued and not yet finished."""

    __slots__ = ("name", "flags", "nr_drainers", "queued", "unfinished", "running",
                 "destroyed", "lockdep_map", "rcu", "version", "__weakref__")
    # What the scheduler reads in a flusher's enabling predicate at any time.
    __kasan_ignore__ = frozenset({"name", "unfinished", "version"})

    def __init__(self, name: str, flags: int) -> None:
        self.name = name
        self.flags = flags
        self.nr_drainers = 0
        self.queued = 0  # sequence number of the last item queued
        self.unfinished: dict[int, _Item] = {}  # seq -> item, queued or running
        self.running = 0
        self.destroyed = False
        self.lockdep_map = lockdep_map(f"(wq_completion){name}")
        self.rcu = rcu_head(self)
        self.version = 0

    def __repr__(self) -> str:
        return f"workqueue_struct({self.name})"


class worker_pool:
    """The execution's workers and the items waiting for one (FIFO)."""

    __slots__ = ("worklist", "workers", "version", "acc", "__weakref__")

    def __init__(self) -> None:
        self.worklist: list[_Item] = []
        self.workers = 0
        self.version = 0
        self.acc = ((self, WRITE),)


def _pool() -> worker_pool:
    data = context.scope()
    pool = data.get(_POOL)
    if pool is None:
        pool = data[_POOL] = worker_pool()
    return pool


def alloc_workqueue(name: str, flags: int = 0, max_active: int = 0) -> workqueue_struct:
    """A new work queue (``max_active`` is accepted and not modelled, see the module)."""
    return kzalloc(workqueue_struct, name, flags)


def _current_item(t: Any) -> _Item | None:
    return t.local.get("workqueue.current") if t is not None else None


def is_chained_work(wq: workqueue_struct) -> bool:
    """Is the running thread a worker executing an item of ``wq``?"""
    item = _current_item(current_thread())
    return item is not None and item.wq is wq


def queue_work(wq: workqueue_struct, work: work_struct) -> bool:
    """Queue ``work`` on ``wq`` unless it is pending already; True if this call set PENDING."""
    t = current_thread()
    pool = _pool()
    if t is not None:
        visible(f"queue_work({wq.name})", ((work, WRITE), (wq, WRITE), (pool, WRITE)))
    if work.pending:
        return False
    work.pending = True
    work.version += 1
    # __queue_work(): while draining, only the queue's own items may queue more.
    if wq.flags & __WQ_DRAINING and not is_chained_work(wq):
        warn_at(None, __kernel_file__, "__queue_work", once_key=("__queue_work", id(wq)))
        return True
    wq.queued += 1
    item = _Item(work, wq, wq.queued)
    wq.unfinished[item.seq] = item
    wq.version += 1
    work.wq = wq
    pool.worklist.append(item)
    pool.version += 1
    return True


# ------------------------------------------------------------------ workers
def kworker(state: Any = None) -> None:
    """The body of a worker thread: run queued items forever, idle when there are none.

    Give it to the engine as a thread (``explore(setup, [..., kworker])``); the
    execution's ``state`` is not used.
    """
    t = current_thread()
    if t is None:
        raise RuntimeError("kworker runs as a model thread")
    pool = _pool()
    pool.workers += 1
    while True:
        t.idle = True
        visible("worker_thread: idle", pool.acc, lambda: bool(pool.worklist),
                waits_for="work")
        t.idle = False
        item = pool.worklist.pop(0)
        pool.version += 1
        process_one_work(t, item)


def process_one_work(t: Any, item: _Item) -> None:
    """Clear PENDING, run the item's function under the lockdep maps, retire the item.

    The kernel takes the item off the list and clears PENDING in one critical
    section of the pool lock; here they are two steps.  A ``queue_work`` or
    ``work_pending`` between them sees PENDING still set, the same as just
    before the item was taken, so no outcome is added or lost.
    """
    work, wq = item.work, item.wq
    func = work.func
    name = getattr(func, "__name__", "?")
    visible(f"process_one_work({name})", ((work, WRITE),))
    work.pending = False
    work.version += 1
    wq.running += 1
    # The item may free the struct that embeds it (the kernel allows that and
    # copies the item's lockdep map first): nothing below touches ``work``.
    work_map = work.lockdep_map
    _lock_map_acquire(t, wq.lockdep_map)
    _lock_map_acquire(t, work_map)
    t.local["workqueue.current"] = item
    func(work)
    t.local["workqueue.current"] = None
    _lock_map_release(t, work_map)
    _lock_map_release(t, wq.lockdep_map)
    if lockdep.held_locks(t) or lockdep.rcu_read_lock_nesting(t):
        raise Finding("BUG", "BUG: workqueue leaked lock or atomic: "
                      f"{t.name}/0x{lockdep.atomic_holds(t):08x}/{t.tid}", function=name,
                      details=[f"    last function: {name}", *lockdep.held_lines(t)])
    visible(f"worker_thread: {wq.name} item done", ((wq, WRITE),))
    wq.running -= 1
    del wq.unfinished[item.seq]
    wq.version += 1


def _run_pending_inline(wq: workqueue_struct) -> None:
    """Outside model threads: run ``wq``'s queued items now, in order."""
    pool = context.scope(checking=runtime.current_execution() is None).get(_POOL)
    while wq.unfinished:
        seq = min(wq.unfinished)
        item = wq.unfinished.pop(seq)
        if pool is not None and item in pool.worklist:
            pool.worklist.remove(item)
        item.work.pending = False
        item.work.func(item.work)


# ------------------------------------------------------------------ flushes
def _check_flush_dependency(t: Any, target: workqueue_struct) -> None:
    item = _current_item(t)
    if target.flags & WQ_MEM_RECLAIM or item is None:
        return
    if item.wq.flags & WQ_MEM_RECLAIM:
        warn_at(f"workqueue: WQ_MEM_RECLAIM {item.wq.name}:"
                f"{getattr(item.work.func, '__name__', '?')} is flushing !WQ_MEM_RECLAIM "
                f"{target.name}", __kernel_file__, "check_flush_dependency",
                once_key=("check_flush_dependency", id(target)))


def flush_workqueue(wq: workqueue_struct) -> None:
    """Wait until every item queued on ``wq`` before this call has finished."""
    t = current_thread()
    if t is None:
        _run_pending_inline(wq)
        return
    sched.might_sleep()
    _lock_map_acquire(t, wq.lockdep_map)
    _lock_map_release(t, wq.lockdep_map)
    _check_flush_dependency(t, wq)
    label = f"flush_workqueue({wq.name})"
    visible(label, ((wq, READ),))
    if _pool().workers == 0 and wq.unfinished:
        # Checked after the first step: workers count themselves when they start.
        raise RuntimeError(f"flush_workqueue({wq.name}): no kworker thread in this "
                           "execution would ever run its items")
    target = wq.queued
    if any(seq <= target for seq in wq.unfinished):
        visible(f"{label} wait", ((wq, READ),),
                lambda: not any(seq <= target for seq in wq.unfinished),
                waits_for=f"the items queued on {wq.name}")


def drain_workqueue(wq: workqueue_struct) -> None:
    """Flush ``wq`` until it is empty, refusing new items from outside it meanwhile."""
    t = current_thread()
    if t is None:
        _run_pending_inline(wq)
        return
    visible(f"drain_workqueue({wq.name})", ((wq, WRITE),))
    wq.nr_drainers += 1
    if wq.nr_drainers == 1:
        wq.flags |= __WQ_DRAINING
    wq.version += 1
    while True:
        flush_workqueue(wq)
        visible(f"drain_workqueue({wq.name}) drained?", ((wq, WRITE),))
        if not wq.unfinished:
            break
    wq.nr_drainers -= 1
    if wq.nr_drainers == 0:
        wq.flags &= ~__WQ_DRAINING
    wq.version += 1


def rcu_free_wq(head: rcu_head) -> None:
    kfree(head.owner)


def destroy_workqueue(wq: workqueue_struct) -> None:
    """Drain ``wq``, check nothing is left in flight, free it after a grace period."""
    drain_workqueue(wq)
    if current_thread() is not None:
        visible(f"destroy_workqueue({wq.name})", ((wq, WRITE),))
    if wq.unfinished:
        # WARN_ON(pwq_busy(pwq)); its pr_warn() follows the WARNING, so with
        # panic_on_warn it is never printed: it is the message of a soft WARN.
        warn_at(f"destroy_workqueue: {wq.name} has the following busy pwq", __kernel_file__,
                "destroy_workqueue")
        return
    wq.destroyed = True
    wq.version += 1
    call_rcu(wq.rcu, rcu_free_wq)

