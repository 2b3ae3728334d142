"""Sleepable RCU: ``srcu_struct`` domains with their own readers and grace periods.

Each (domain, thread) pair has a reader object; ``srcu_read_lock`` /
``srcu_read_unlock`` are visible WRITEs of it (the unlock also of its word of
completed sections, which is all the wait reads: see ``rcu``), and ``synchronize_srcu`` waits,
like ``synchronize_rcu``, for the readers inside a section of *this domain*
when it started.  A reader may sleep inside its section (it is not atomic
context), and KVM relies on that: a vCPU holds ``kvm->srcu`` across faults.

``synchronize_srcu`` inside a read-side section of the same domain is a
deadlock in the kernel; lockdep reports it ("Illegal synchronize_srcu() in
same-type SRCU (or in RCU) read-side critical section").
"""

from __future__ import annotations

from typing import Any

from ..engine import runtime
from ..engine.access import READ
from ..engine.runtime import Finding, current_execution, current_thread, visible
from . import callsite, lockdep, sched
from .rcu import RcuReader, wait_for_readers

runtime.hide_frames_of(__file__)


class srcu_struct:
    """An SRCU domain (e.g. ``kvm->srcu``)."""

    __slots__ = ("name", "__weakref__")

    def __init__(self, name: str) -> None:
        self.name = name


def _reader(ssp: srcu_struct, t: Any) -> RcuReader:
    key = ("srcu", id(ssp))
    r = t.local.get(key)
    if r is None:
        r = t.local[key] = RcuReader(t.name)
        r.rename(f"{ssp.name} reader ({t.name})")
    return r


def srcu_read_lock(ssp: srcu_struct) -> int:
    """Enter a read-side section of ``ssp``; returns the index to unlock with."""
    t = current_thread()
    if t is None:
        return 0
    r = _reader(ssp, t)
    if r.nesting == 0:
        visible(f"srcu_read_lock({ssp.name})", r.acc)
        r.version += 1
    r.nesting += 1
    return 0


def srcu_read_unlock(ssp: srcu_struct, idx: int) -> None:
    t = current_thread()
    if t is None:
        return
    r = _reader(ssp, t)
    if r.nesting == 0:
        raise Finding("lockdep", "WARNING: bad unlock balance detected!",
                      function=callsite.model_function(),
                      details=[f"{t.name} is trying to release lock ({ssp.name}) at:",
                               *callsite.indented(callsite.call_chain()),
                               "but there are no more locks to release!"])
    r.nesting -= 1
    if r.nesting == 0:
        visible(f"srcu_read_unlock({ssp.name})", r.unlock_acc)
        r.gen += 1
        r.version += 1


def synchronize_srcu(ssp: srcu_struct) -> None:
    """Wait until every ``ssp`` read-side section that began before the call has ended."""
    t = current_thread()
    if t is None:
        return
    if _reader(ssp, t).nesting and lockdep.debug_locks():
        raise Finding("lockdep", "WARNING: suspicious RCU usage: Illegal synchronize_srcu() "
                      "in same-type SRCU (or in RCU) read-side critical section!",
                      function=callsite.model_function(),
                      details=["Call Trace:", *callsite.indented(callsite.call_chain())])
    sched.might_sleep()
    ex = current_execution()
    readers = [_reader(ssp, o) for o in ex.threads if o is not t]
    label = f"synchronize_srcu({ssp.name})"
    visible(label, tuple((r, READ) for r in readers))
    snap = [(r, r.gen) for r in readers if r.nesting]
    wait_for_readers(label, snap, "an SRCU grace period")


synchronize_srcu_expedited = synchronize_srcu
