"""rwlock_t: many readers or one writer, with debug and lockdep checks.

``read_lock`` is a shared acquire (enabled while no writer holds the lock),
``write_lock`` an exclusive one (enabled while nobody holds it).  Readers are
let in whenever no writer *holds* the lock.  Simplification: the kernel's
queued rwlock also makes a new reader wait behind a *waiting* writer (outside
interrupt context); the model does not, so it cannot show the deadlock of a
reader re-taking a read lock while a writer waits -- lockdep's rules for
recursive reads are applied instead.

As for spinlocks, a *word* object makes trylocks race with releases: write
releases and write_trylock write it, read releases and read_trylock read it
(so two readers' releases stay independent).
"""

from __future__ import annotations

from typing import Any

from ..engine import runtime
from ..engine.access import ACQUIRE, ACQUIRE_SHARED, READ, RELEASE, RELEASE_SHARED, WRITE
from ..engine.runtime import Finding, current_thread, visible
from . import lockdep, sched
from .spinlock import NOT_A_THREAD, LockWord, default_lock_name, release_accesses, spin_bug

runtime.hide_frames_of(__file__)


class rwlock_t:
    """A reader-writer lock; ``name`` is its lockdep class."""

    __slots__ = ("name", "writer", "readers", "word", "_rfree", "_wfree", "_racq", "_rrel",
                 "_rtry", "_wacq", "_wrel", "_wtry", "_labels", "on_release", "release_reads",
                 "__weakref__")
    # Readable after a free (the scheduler evaluates waiters' predicates at any
    # time); every lock and unlock writes the state, and that is reported.
    __kasan_ignore__ = frozenset({"name", "writer", "readers", "word", "_rfree", "_wfree",
                                  "_racq", "_rrel", "_rtry", "_wacq", "_wrel", "_wtry",
                                  "_labels", "on_release", "release_reads"})

    def __init__(self, name: str | None = None) -> None:
        self.name = name or default_lock_name("rwlock")
        self.writer: Any = None  # the ModelThread holding it for write, or None
        self.readers = 0  # number of read holds
        self.word = LockWord(self)
        self._rfree = self._no_writer
        self._wfree = self._unheld
        self._racq = ((self, ACQUIRE_SHARED),)
        self._rrel = ((self, RELEASE_SHARED), (self.word, READ))
        self._rtry = ((self, ACQUIRE_SHARED), (self.word, READ))
        self._wacq = ((self, ACQUIRE),)
        self._wrel = ((self, RELEASE), (self.word, WRITE))
        self._wtry = ((self, ACQUIRE), (self.word, WRITE))
        self.on_release: Any = None  # as spinlock_t.on_release, for both modes
        self.release_reads: Any = None  # as spinlock_t.release_reads
        n = self.name
        self._labels = (f"read_lock({n})", f"read_unlock({n})", f"read_trylock({n})",
                        f"write_lock({n})", f"write_unlock({n})", f"write_trylock({n})")

    @property
    def owner(self) -> Any:
        return self.writer

    def _no_writer(self) -> bool:
        return self.writer is None

    def _unheld(self) -> bool:
        return self.writer is None and self.readers == 0

    def __repr__(self) -> str:
        return f"rwlock_t({self.name})"


def DEFINE_RWLOCK(name: str) -> rwlock_t:
    return rwlock_t(name)


def rwlock_init(lock: rwlock_t) -> None:
    lock.writer = None
    lock.readers = 0


def _outside_block(lock: rwlock_t, what: str) -> None:
    raise Finding("deadlock", f"{what}({lock.name}) outside model threads: the lock is held")


def read_lock(lock: rwlock_t) -> None:
    """Take ``lock`` for read, waiting while a writer holds it."""
    t = current_thread()
    if t is None:
        if lock.writer is not None:
            _outside_block(lock, "read_lock")
        lock.readers += 1
        return
    held = t.local.get(lockdep.HELD)
    if held:
        lockdep.check_acquire(t, held, lock, True)
    visible(lock._labels[0], lock._racq, lock._rfree, lock.name)
    lock.readers += 1
    lockdep.acquired(t, lock, True)


def read_unlock(lock: rwlock_t) -> None:
    """Release a read hold of ``lock``."""
    t = current_thread()
    if t is None:
        lock.readers -= 1
        return
    visible(lock._labels[1], release_accesses(lock, lock._rrel, t))
    if lock.readers <= 0 or not lockdep.released(t, lock, True):
        lockdep.bad_unlock(lock, t)
    lock.readers -= 1
    if lock.on_release is not None:
        lock.on_release(t)


def read_trylock(lock: rwlock_t) -> int:
    """Take ``lock`` for read unless a writer holds it: 1 on success."""
    t = current_thread()
    if t is not None:
        visible(lock._labels[2], lock._rtry)
    if lock.writer is not None:
        return 0
    lock.readers += 1
    if t is not None:
        lockdep.acquired(t, lock, True)
    return 1


def write_lock(lock: rwlock_t) -> None:
    """Take ``lock`` exclusively, waiting while anyone holds it."""
    t = current_thread()
    if t is None:
        if lock.writer is not None or lock.readers:
            _outside_block(lock, "write_lock")
        lock.writer = NOT_A_THREAD
        return
    if lock.writer is t:
        spin_bug(lock, "recursion", t, kind="rwlock")
    held = t.local.get(lockdep.HELD)
    if held:
        lockdep.check_acquire(t, held, lock, False)
    visible(lock._labels[3], lock._wacq, lock._wfree, lock.name)
    lock.writer = t
    lockdep.acquired(t, lock, False)


def write_unlock(lock: rwlock_t) -> None:
    """Release the running thread's exclusive hold of ``lock``."""
    t = current_thread()
    if t is None:
        lock.writer = None
        return
    visible(lock._labels[4], release_accesses(lock, lock._wrel, t))
    if lock.writer is not t:
        spin_bug(lock, "wrong owner", t, kind="rwlock")
    lock.writer = None
    lockdep.released(t, lock, False)
    if lock.on_release is not None:
        lock.on_release(t)


def write_trylock(lock: rwlock_t) -> int:
    """Take ``lock`` exclusively if nobody holds it: 1 on success."""
    t = current_thread()
    if t is not None:
        visible(lock._labels[5], lock._wtry)
    if lock.writer is not None or lock.readers:
        return 0
    lock.writer = t if t is not None else NOT_A_THREAD
    if t is not None:
        lockdep.acquired(t, lock, False)
    return 1


def rwlock_needbreak(lock: rwlock_t) -> bool:
    """Always False in the model: cond_resched_rwlock_* always yields (see spin_needbreak)."""
    return False


def cond_resched_rwlock_read(lock: rwlock_t) -> int:
    """Drop a read hold, let others run, re-take it; returns 1 (it always yields)."""
    lockdep.lockdep_assert_held_read(lock)
    sched.check_sleep(1)
    read_unlock(lock)
    runtime.mark(f"cond_resched_rwlock_read: {lock.name} dropped")
    read_lock(lock)
    return 1


def cond_resched_rwlock_write(lock: rwlock_t) -> int:
    """Drop the write hold, let others run, re-take it; returns 1 (it always yields)."""
    lockdep.lockdep_assert_held_write(lock)
    sched.check_sleep(1)
    write_unlock(lock)
    runtime.mark(f"cond_resched_rwlock_write: {lock.name} dropped")
    write_lock(lock)
    return 1
