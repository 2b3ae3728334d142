"""struct mutex: a sleeping lock.

Like a spinlock it is one visible ACQUIRE (enabled while free) and one
RELEASE, with lockdep tracking the holder.  Unlike one it is not atomic
context: a holder may sleep (``synchronize_srcu`` under ``kvm->slots_lock``),
and taking it is itself a sleep, reported under a spinlock or in an RCU
read-side section (CONFIG_DEBUG_ATOMIC_SLEEP).
"""

from __future__ import annotations

from typing import Any

from ..engine import runtime
from ..engine.access import ACQUIRE, RELEASE
from ..engine.runtime import Finding, current_thread, visible
from . import callsite, lockdep, sched
from .spinlock import spin_bug, take_outside_threads

runtime.hide_frames_of(__file__)


class mutex:
    """A mutex; ``name`` is its lockdep class."""

    __slots__ = ("name", "owner", "_acq", "_rel", "__weakref__")
    __kasan_ignore__ = frozenset({"name"})
    sleeping = True  # lockdep: holding it is not atomic context

    def __init__(self, name: str) -> None:
        self.name = name
        self.owner: Any = None
        self._acq = ((self, ACQUIRE),)
        self._rel = ((self, RELEASE),)

    def __repr__(self) -> str:
        return f"mutex({self.name})"


def mutex_lock(lock: mutex) -> None:
    """Take ``lock``, sleeping while another thread holds it."""
    t = current_thread()
    if t is None:
        take_outside_threads(lock, "mutex_lock")
        return
    sched.might_sleep()
    if lock.owner is t:
        raise Finding("deadlock", f"mutex_lock({lock.name}): recursive locking by {t.name}",
                      function=callsite.model_function())
    held = t.local.get(lockdep.HELD)
    if held:
        lockdep.check_acquire(t, held, lock, False)
    visible(f"mutex_lock({lock.name})", lock._acq, lambda: lock.owner is None, lock.name)
    lock.owner = t
    lockdep.acquired(t, lock, False)


def mutex_unlock(lock: mutex) -> None:
    """Release ``lock``, which the running thread must hold."""
    t = current_thread()
    if t is None:
        lock.owner = None
        return
    visible(f"mutex_unlock({lock.name})", lock._rel)
    if lock.owner is not t:
        spin_bug(lock, "already unlocked" if lock.owner is None else "wrong owner", t,
                 kind="mutex")
    lock.owner = None
    lockdep.released(t, lock, False)


def mutex_is_locked(lock: mutex) -> bool:
    return lock.owner is not None
