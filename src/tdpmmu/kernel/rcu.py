"""RCU: read-side sections, synchronize_rcu(), call_rcu(), rcu_dereference().

Each model thread has one small *reader* object: its outermost
``rcu_read_lock``/``rcu_read_unlock`` are visible WRITEs of it (nested ones are
free), and it counts the sections the thread has left.  ``synchronize_rcu``
first READs every other thread's reader in one visible operation (the start of
the grace period: a snapshot of who is inside a section), then, if anybody
was, blocks in a second one until each of those readers has left the section
it was in.  Readers that enter after the snapshot are not waited for, as in
the kernel.  That second operation only reads how many sections each reader
has left, a word of its own (``RcuReader.done``) that only
``rcu_read_unlock`` writes: a reader entering its next section does not
change whether the wait is over, so the two are independent.  Under
``set_reader_words(False)`` the wait reads the reader itself (the coarser
relation, kept to test the finer one against).

``call_rcu(head, func)`` queues ``func(head)``.  Simplification: callbacks run
in the thread that completes a later grace period -- at the end of the next
``synchronize_rcu`` or ``rcu_barrier`` whose grace period started after the
``call_rcu`` -- instead of in softirq context, and never earlier; pending
callbacks can be flushed after the execution with ``rcu_barrier()`` in a
check.  Outside model threads (setup) no reader exists, so ``call_rcu`` runs
the callback at once and ``synchronize_rcu`` returns at once.

Lockdep: ``synchronize_rcu`` inside a read-side section is "Illegal
synchronize_rcu() in RCU read-side critical section"; it also might sleep, so
under a spinlock it is "sleeping function called from invalid context".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..engine import runtime
from ..engine.access import READ, WRITE
from ..engine.runtime import Finding, current_execution, current_thread, visible
from ..engine.var import Var, note_read
from . import callsite, context, lockdep, sched

runtime.hide_frames_of(__file__)


# [True]: a grace period's wait reads each reader's ``done`` word; [False]:
# the reader (see the module docstring).
_READER_WORDS = [True]


def set_reader_words(on: bool) -> bool:
    """Give readers a word of completed sections (True) or not; returns the old
    choice.  Takes effect for readers made afterwards (each execution's)."""
    old, _READER_WORDS[0] = _READER_WORDS[0], bool(on)
    return old


class ReaderDone:
    """Model only: the count of sections a reader has left, as an access object."""

    __slots__ = ("name", "version", "__weakref__")

    def __init__(self, name: str) -> None:
        self.name = name
        self.version = 0


class RcuReader:
    """A thread's read-side state: section nesting and sections completed.

    ``acc`` is what entering an outermost section declares, ``unlock_acc``
    leaving it, ``wait_acc`` a grace period waiting for the section to end.
    """

    __slots__ = ("name", "nesting", "gen", "version", "acc", "unlock_acc", "wait_acc",
                 "__weakref__")

    def __init__(self, name: str) -> None:
        self.name = f"rcu_reader({name})"
        self.nesting = 0
        self.gen = 0  # completed outermost sections
        self.version = 0
        self.acc = ((self, WRITE),)
        if _READER_WORDS[0]:
            done = ReaderDone(f"{self.name}.done")
            self.unlock_acc = ((self, WRITE), (done, WRITE))
            self.wait_acc = ((done, READ),)
        else:
            self.unlock_acc = self.acc
            self.wait_acc = ((self, READ),)

    def rename(self, name: str) -> None:
        self.name = name
        if len(self.unlock_acc) > 1:
            self.unlock_acc[1][0].name = f"{name}.done"


class RcuQueue:
    """The pending call_rcu callbacks of an execution (an access object)."""

    __slots__ = ("pending", "version", "acc", "__weakref__")

    def __init__(self) -> None:
        self.pending: list[tuple[Any, Callable[[Any], Any]]] = []
        self.version = 0
        self.acc = ((self, WRITE),)


class rcu_head:
    """The callback head embedded in an RCU-freed object (``container_of`` via ``owner``)."""

    __slots__ = ("owner", "func", "__weakref__")
    __kasan_ignore__ = frozenset({"owner"})
    __kasan_embedded_in_owner__ = True

    def __init__(self, owner: Any = None) -> None:
        self.owner = owner
        self.func: Callable[[Any], Any] | None = None


def _reader(t: Any) -> RcuReader:
    r = t.local.get(lockdep.RCU)
    if r is None:
        r = t.local[lockdep.RCU] = RcuReader(t.name)
    return r


def _queue() -> RcuQueue:
    data = context.scope()
    q = data.get("rcu.queue")
    if q is None:
        q = data["rcu.queue"] = RcuQueue()
    return q


def rcu_read_lock() -> None:
    """Enter a read-side section (nests)."""
    t = current_thread()
    if t is None:
        return
    r = _reader(t)
    if r.nesting:
        r.nesting += 1
        return
    visible("rcu_read_lock", r.acc)
    r.nesting = 1
    r.version += 1


def rcu_read_unlock() -> None:
    """Leave a read-side section."""
    t = current_thread()
    if t is None:
        return
    r = t.local.get(lockdep.RCU)
    if r is None or r.nesting == 0:
        raise Finding("lockdep", "WARNING: bad unlock balance detected!",
                      function=callsite.model_function(),
                      details=[f"{t.name} is trying to release lock (rcu_read_lock) at:",
                               *callsite.indented(callsite.call_chain()),
                               "but there are no more locks to release!"])
    if r.nesting > 1:
        r.nesting -= 1
        return
    visible("rcu_read_unlock", r.unlock_acc)
    r.nesting = 0
    r.gen += 1
    r.version += 1


def rcu_lockdep_warn(message: str) -> None:
    """``RCU_LOCKDEP_WARN``: lockdep's "suspicious RCU usage" report (a finding)."""
    raise Finding("lockdep", f"WARNING: suspicious RCU usage: {message}",
                  function=callsite.model_function(),
                  details=[f"{callsite.task_name()}: {message}", "Call Trace:",
                           *callsite.indented(callsite.call_chain())])


def _grace_period(label: str) -> None:
    """Wait for the readers of now, then run the callbacks queued before now."""
    t = current_thread()
    if t is None:
        _run(_take_all())
        return
    sched.might_sleep()
    ex = current_execution()
    readers = [_reader(o) for o in ex.threads if o is not t]
    q = _queue()
    visible(label, (*((r, READ) for r in readers), (q, WRITE)))
    snap = [(r, r.gen) for r in readers if r.nesting]
    batch = q.pending
    q.pending = []
    wait_for_readers(label, snap, "an RCU grace period")
    _run(batch)


def wait_for_readers(label: str, snap: list[tuple[Any, int]], what: str) -> None:
    """Block until each reader in ``snap`` (reader, sections completed when the
    grace period began) has left the section it was in."""
    if not snap:
        return

    def ended() -> bool:
        return all(r.gen != gen for r, gen in snap)

    names = ", ".join(r.name for r, _ in snap)
    visible(f"{label} wait", tuple(a for r, _ in snap for a in r.wait_acc), ended,
            waits_for=f"{what} ({names})")


def _take_all() -> list[tuple[Any, Callable[[Any], Any]]]:
    q = context.scope(checking=current_execution() is None).get("rcu.queue")
    if q is None:
        return []
    batch, q.pending = q.pending, []
    return batch


def _run(batch: list[tuple[Any, Callable[[Any], Any]]]) -> None:
    for head, func in batch:
        func(head)


def synchronize_rcu() -> None:
    """Wait until every read-side section that began before the call has ended."""
    if lockdep.rcu_read_lock_nesting() > 0 and lockdep.debug_locks():
        rcu_lockdep_warn("Illegal synchronize_rcu() in RCU read-side critical section!")
    _grace_period("synchronize_rcu")


def rcu_barrier() -> None:
    """Wait until every callback queued by call_rcu so far has run.

    Outside model threads (a check after the execution) it runs them at once.
    """
    if lockdep.rcu_read_lock_nesting() > 0 and lockdep.debug_locks():
        rcu_lockdep_warn("Illegal rcu_barrier() in RCU read-side critical section!")
    _grace_period("rcu_barrier")


def call_rcu(head: Any, func: Callable[[Any], Any]) -> None:
    """Run ``func(head)`` after a grace period (see the module docstring)."""
    if current_thread() is None:
        func(head)
        return
    q = _queue()
    visible("call_rcu", q.acc)
    if isinstance(head, rcu_head):
        head.func = func
    q.pending.append((head, func))
    q.version += 1


def kfree_rcu(obj: Any) -> None:
    """Free ``obj`` after a grace period."""
    from .slab import kfree

    call_rcu(obj, kfree)


def rcu_dereference(p: Any) -> Any:
    """Load an RCU-protected pointer: a visible READ of a ``Var`` (other values pass through)."""
    if isinstance(p, Var):
        visible(f"rcu_dereference({p.name or 'ptr'})", ((p, READ),))
        note_read(p)
        return p.value
    return p


def rcu_dereference_check(p: Any, c: Any) -> Any:
    """``rcu_dereference`` that is also legal outside a read-side section when ``c`` holds."""
    if not c and not lockdep.rcu_read_lock_held() and lockdep.debug_locks():
        rcu_lockdep_warn("suspicious rcu_dereference_check() usage!")
    return rcu_dereference(p)


def rcu_dereference_protected(p: Any, c: Any) -> Any:
    """Load an RCU pointer on the update side, where ``c`` (the update lock is held) holds.

    A plain load: updaters are serialised by their lock, so it is not visible.
    """
    if not c and lockdep.debug_locks() and current_thread() is not None:
        rcu_lockdep_warn("suspicious rcu_dereference_protected() usage!")
    return p.value if isinstance(p, Var) else p


def rcu_assign_pointer(p: Var, v: Any) -> None:
    """Publish ``v`` through the RCU-protected pointer ``p`` (a visible WRITE)."""
    visible(f"rcu_assign_pointer({p.name or 'ptr'})", ((p, WRITE),))
    p.value = v
    p.version += 1
