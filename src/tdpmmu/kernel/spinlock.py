"""spinlock_t with the kernel's debug-spinlock and lockdep checks.

``spin_lock`` is one visible operation (an ACQUIRE of the lock, enabled while
the lock is free), ``spin_unlock`` another (a RELEASE).  CONFIG_DEBUG_SPINLOCK's
checks are kept: taking a lock the thread already holds is reported as
``BUG: spinlock recursion`` instead of spinning forever, and releasing a lock
the thread does not hold as ``BUG: spinlock already unlocked`` / ``wrong owner``.

``spin_trylock`` and ``spin_is_locked`` see whether the lock is held, so their
outcome depends on releases too.  The engine's acquire/release modes order a
release only before the next acquire; so that DPOR also tries a trylock before
and after each release, a lock has a second access object, its *word*, written
by releases and trylocks (releases of one lock are already ordered, so this
adds no interleavings for plain lock/unlock).

Outside model threads (setup, checks) a lock is simply taken and released.
"""

from __future__ import annotations

from typing import Any

from ..engine import runtime
from ..engine.access import ACQUIRE, RELEASE, WRITE
from ..engine.runtime import Finding, current_thread, visible
from . import callsite, lockdep, sched
from .bug import BUG

runtime.hide_frames_of(__file__)

NOT_A_THREAD = "setup"  # owner of a lock taken outside model threads


def default_lock_name(kind: str) -> str:
    """A lock class name from the constructor's call site (like the kernel's static key)."""
    frame = callsite.caller_frame()
    if frame is None:
        return kind
    return f"{kind}@{frame.f_code.co_qualname}:{frame.f_lineno}"


class LockWord:
    """The part of a lock that trylock and spin_is_locked observe (an access object)."""

    __slots__ = ("lock", "__weakref__")

    def __init__(self, lock: Any) -> None:
        self.lock = lock


class spinlock_t:
    """A spinlock; ``name`` is its lockdep class and appears in reports and traces."""

    __slots__ = ("name", "owner", "word", "_free", "_acq", "_rel", "_try", "_l_lock",
                 "_l_unlock", "_l_try", "on_release", "release_reads", "__weakref__")
    # The scheduler evaluates ``_is_free`` of waiters at any time, so reading the
    # state of a freed lock must not raise there; taking or releasing it writes
    # ``owner``, and that is reported.
    __kasan_ignore__ = frozenset({"name", "owner", "word", "_free", "_acq", "_rel", "_try",
                                  "_l_lock", "_l_unlock", "_l_try", "on_release",
                                  "release_reads"})

    def __init__(self, name: str | None = None) -> None:
        self.name = name or default_lock_name("spinlock")
        self.owner: Any = None  # the holding ModelThread, NOT_A_THREAD, or None
        self.word = LockWord(self)
        self._free = self._is_free
        self._acq = ((self, ACQUIRE),)
        self._rel = ((self, RELEASE), (self.word, WRITE))
        self._try = ((self, ACQUIRE), (self.word, WRITE))
        self._l_lock = f"spin_lock({self.name})"
        self._l_unlock = f"spin_unlock({self.name})"
        self._l_try = f"spin_trylock({self.name})"
        # Model only: called with the releasing thread in the step of each release
        # by a model thread (a property checking what must hold at unlock), and
        # what it will read, as accesses of that step (called before it, with
        # the releasing thread): the check is exact only if its reads are declared.
        self.on_release: Any = None
        self.release_reads: Any = None

    def _is_free(self) -> bool:
        return self.owner is None

    def __repr__(self) -> str:
        return f"spinlock_t({self.name})"


def DEFINE_SPINLOCK(name: str) -> spinlock_t:
    return spinlock_t(name)


def spin_lock_init(lock: spinlock_t) -> None:
    """Reset ``lock`` to unlocked."""
    lock.owner = None


def take_outside_threads(lock: Any, op: str) -> None:
    """Setup and checks run unobserved: an owner-tracked lock is simply taken,
    and finding it held there is a deadlock of the whole model."""
    if lock.owner is not None:
        raise Finding("deadlock", f"{op}({lock.name}) outside model threads: the lock is held")
    lock.owner = NOT_A_THREAD


def spin_lock(lock: spinlock_t) -> None:
    """Take ``lock``, waiting while another thread holds it."""
    t = current_thread()
    if t is None:
        take_outside_threads(lock, "spin_lock")
        return
    if lock.owner is t:
        spin_bug(lock, "recursion", t)
    held = t.local.get(lockdep.HELD)
    if held:
        lockdep.check_acquire(t, held, lock, False)
    visible(lock._l_lock, lock._acq, lock._free, lock.name)
    lock.owner = t
    if held is None:
        t.local[lockdep.HELD] = [(lock, False)]
    else:
        held.append((lock, False))


def release_accesses(lock: Any, base: tuple, t: Any) -> tuple:
    """A release's accesses: the lock's own, and what its ``on_release`` reads."""
    reads = lock.release_reads
    return base if reads is None else base + tuple(reads(t))


def spin_unlock(lock: spinlock_t) -> None:
    """Release ``lock``, which the running thread must hold."""
    t = current_thread()
    if t is None:
        if lock.owner is None:
            raise Finding("BUG", f"BUG: spinlock already unlocked ({lock.name}) outside "
                          "model threads")
        lock.owner = None
        return
    visible(lock._l_unlock, release_accesses(lock, lock._rel, t))
    if lock.owner is not t:
        spin_bug(lock, "already unlocked" if lock.owner is None else "wrong owner", t)
    lock.owner = None
    held = t.local[lockdep.HELD]
    if held[-1][0] is lock:
        held.pop()
    else:
        lockdep.released(t, lock, False)
    if lock.on_release is not None:
        lock.on_release(t)


def spin_trylock(lock: spinlock_t) -> int:
    """Take ``lock`` if it is free: 1 on success, 0 if it is held."""
    t = current_thread()
    if t is None:
        if lock.owner is not None:
            return 0
        lock.owner = NOT_A_THREAD
        return 1
    visible(lock._l_try, lock._try)
    if lock.owner is not None:
        return 0
    lock.owner = t
    lockdep.acquired(t, lock, False)
    return 1


def spin_is_locked(lock: spinlock_t) -> bool:
    """Is ``lock`` held by anyone now?"""
    visible(f"spin_is_locked({lock.name})", lock._try)
    return lock.owner is not None


def assert_spin_locked(lock: spinlock_t) -> None:
    """``BUG_ON(!spin_is_locked(lock))``.

    Not a visible operation: callers assert a lock they hold, which no other
    thread can change.  (If another thread holds it the assertion passes, as in
    the kernel, but DPOR does not treat that read as a race.)
    """
    if lock.owner is None:
        BUG()


def spin_needbreak(lock: spinlock_t) -> bool:
    """Is someone waiting for ``lock``?  Always False in the model.

    The model yields at every ``cond_resched_lock`` instead (release, a
    scheduling point, re-acquire), which covers both answers: the scheduler
    may or may not run a waiter in between.  Code that yields only when this
    returns True is modelled by the kvm layer's own choice, not here.
    """
    return False


def cond_resched_lock(lock: spinlock_t) -> int:
    """Drop ``lock``, let others run, take it again; returns 1 (it always yields).

    The two visible operations are the release and the re-acquire; any other
    thread may take the lock in between.  As in ``__cond_resched_lock`` the
    caller must hold the lock and no other lock (nor be in an RCU section).
    """
    lockdep.lockdep_assert_held(lock)
    sched.check_sleep(1)
    spin_unlock(lock)
    runtime.mark(f"cond_resched_lock: {lock.name} dropped")
    spin_lock(lock)
    return 1


def spin_bug(lock: Any, msg: str, t: Any, kind: str = "spinlock") -> None:
    """CONFIG_DEBUG_SPINLOCK's report (``spin_dump``)."""
    owner = lock.owner
    if owner is None:
        owner_name, owner_cpu = "<none>", -1
    elif owner is NOT_A_THREAD:
        owner_name, owner_cpu = NOT_A_THREAD, -1
    else:
        owner_name, owner_cpu = owner.name, owner.tid
    raise Finding("BUG", f"BUG: {kind} {msg} on CPU#{t.tid}, {t.name}",
                  function=callsite.model_function(),
                  details=[f" lock: {lock.name}, .owner: {owner_name}, .owner_cpu: {owner_cpu}",
                           "Call Trace:", *callsite.indented(callsite.call_chain())])


