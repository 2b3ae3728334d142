"""Lockdep: held locks per thread, lock-order inversions, lock assertions, atomic context.

Each model thread keeps the locks it holds in ``thread.local`` as a list of
``(lock, read)`` pairs: appending and popping it is all a lock operation costs
when no other lock is held.  A *lock class* is the lock's name (the kernel keys
classes by the lock's init site; in the model, locks created with the same name
are one class).

Acquiring lock B while holding A records the dependency A -> B in a graph that
lives for the execution.  If B already reaches A the acquisition could
deadlock, and the report is lockdep's "possible circular locking dependency
detected" -- found in any execution that shows both orders, even one where the
threads happen not to deadlock.  Read acquisitions of an ``rwlock_t`` follow
the kernel's recursive-read rule: a dependency chain only closes a cycle where
each lock can block the next, and a reader never blocks a reader.  Trylocks add
no dependencies (they cannot wait).

Assertions (``lockdep_assert_held`` and friends) warn through ``WARN_ON`` as in
the kernel.  Outside model threads (setup, checks) nothing is tracked and every
assertion holds, like early boot before lockdep is enabled.  All checks stop
after :func:`debug_locks_off` (or ``set_debug_locks(False)``), except the
bookkeeping that ``in_atomic()`` needs.
"""

from __future__ import annotations

from typing import Any

from ..engine import runtime
from ..engine.runtime import Finding, current_thread
from . import bug, callsite, context

runtime.hide_frames_of(__file__)

HELD = "lockdep.held"  # thread.local key: list of (lock, read) pairs, oldest first
RCU = "rcu.reader"  # thread.local key of the thread's RCU reader state (see rcu.py)
_GRAPH = "lockdep.graph"


def set_debug_locks(enabled: bool) -> bool:
    """Turn lockdep's checks on or off; returns the previous setting.

    Inside an execution this holds for the execution, outside it sets the
    default.  Debug-spinlock checks (recursion, wrong owner) stay on.
    """
    return context.set_switch("debug_locks", enabled)


def debug_locks_off() -> bool:
    """Turn lockdep off for this execution (or by default outside one)."""
    return set_debug_locks(False)


def debug_locks() -> bool:
    return context.switch("debug_locks")


# ------------------------------------------------------------ held-lock stack
def held_locks(t: Any = None) -> list[tuple[Any, bool]]:
    """The ``(lock, read)`` pairs a thread holds, oldest first (the list itself)."""
    t = t if t is not None else current_thread()
    if t is None:
        return []
    held = t.local.get(HELD)
    if held is None:
        held = t.local[HELD] = []
    return held


def acquired(t: Any, lock: Any, read: bool) -> None:
    """Record that ``t`` now holds ``lock``."""
    held = t.local.get(HELD)
    if held is None:
        t.local[HELD] = [(lock, read)]
    else:
        held.append((lock, read))


def released(t: Any, lock: Any, read: bool) -> bool:
    """Forget that ``t`` holds ``lock``; False if it did not hold it in that mode."""
    held = t.local.get(HELD)
    if not held:
        return False
    top = held[-1]
    if top[0] is lock and top[1] == read:
        held.pop()
        return True
    for i in range(len(held) - 2, -1, -1):
        if held[i][0] is lock and held[i][1] == read:
            del held[i]
            return True
    return False


def bad_unlock(lock: Any, t: Any) -> None:
    """Lockdep's report for releasing a lock the thread does not hold."""
    raise Finding("lockdep", "WARNING: bad unlock balance detected!",
                  function=callsite.model_function(),
                  details=[f"{t.name} is trying to release lock ({lock.name}) at:",
                           *callsite.indented(callsite.call_chain()),
                           "but there are no more locks to release!",
                           *_held_lines(t)])


# ------------------------------------------------------------- dependencies
def check_acquire(t: Any, held: list[tuple[Any, bool]], lock: Any, read: bool) -> None:
    """Lockdep's checks before ``t`` waits for ``lock`` while holding ``held`` (non-empty)."""
    if not debug_locks():
        return
    cls = lock.name
    graph: dict[str, dict[str, dict[tuple[bool, bool], tuple[str, list[str]]]]] | None = None
    for h, h_read in held:
        if h is lock or h.name == cls:
            if h is lock and read and h_read:
                continue  # recursive read of an rwlock_t
            _recursive(t, lock, h)
        if graph is None:
            graph = runtime.execution_local().setdefault(_GRAPH, {})
        out = graph.get(h.name)
        modes = (h_read, read)
        if out is not None:
            known = out.get(cls)
            if known is not None and modes in known:
                continue
        path = _find_path(graph, cls, read, h.name, h_read)
        if path is not None:
            _circular(t, lock, read, h, h_read, path)
        if out is None:
            out = graph[h.name] = {}
        out.setdefault(cls, {})[modes] = (t.name, callsite.call_chain())


def _blocks(acquire_read: bool, holder_read: bool) -> bool:
    """Can an acquisition in one mode wait for a holder in the other?"""
    return not (acquire_read and holder_read)


def _find_path(graph: dict, start: str, start_read: bool, goal: str,
               goal_read: bool) -> list[tuple[str, str, bool, bool, Any]] | None:
    """A chain start -> ... -> goal in which every lock can block the next (DFS)."""
    stack: list[tuple[str, bool, list]] = [(start, start_read, [])]
    seen = {(start, start_read)}
    while stack:
        node, in_read, path = stack.pop()
        for nxt, by_modes in graph.get(node, {}).items():
            for (held_read, acq_read), info in by_modes.items():
                if not _blocks(in_read, held_read):
                    continue
                edge = (node, nxt, held_read, acq_read, info)
                if nxt == goal and _blocks(acq_read, goal_read):
                    return [*path, edge]
                if (nxt, acq_read) not in seen:
                    seen.add((nxt, acq_read))
                    stack.append((nxt, acq_read, [*path, edge]))
    return None


def _mode(read: bool) -> str:
    return "{read}" if read else ""


def _circular(t: Any, lock: Any, read: bool, holding: Any, holding_read: bool,
              path: list[tuple[str, str, bool, bool, Any]]) -> None:
    details = [f"{t.name} is trying to acquire lock:",
               f" ({lock.name}){_mode(read)} at:", *callsite.indented(callsite.call_chain()),
               "but task is already holding lock:", f" ({holding.name}){_mode(holding_read)}",
               "which lock already depends on the new lock.",
               "the existing dependency chain (in reverse order) is:"]
    for i, (src, dst, src_read, dst_read, (task, chain)) in enumerate(reversed(path)):
        details.append(f"-> #{i} ({dst}){_mode(dst_read)} acquired by {task} while "
                       f"holding ({src}){_mode(src_read)}:")
        details.extend(callsite.indented(chain, "     "))
    details += ["other info that might help us debug this:",
                " Possible unsafe locking scenario:",
                "       CPU0                    CPU1",
                f"  lock({holding.name});",
                f"                               lock({lock.name});",
                f"                               lock({holding.name});",
                f"  lock({lock.name});",
                " *** DEADLOCK ***", *_held_lines(t)]
    raise Finding("lockdep", "WARNING: possible circular locking dependency detected",
                  function=callsite.model_function(), details=details)


def _recursive(t: Any, lock: Any, holding: Any) -> None:
    raise Finding("lockdep", "WARNING: possible recursive locking detected",
                  function=callsite.model_function(),
                  details=[f"{t.name} is trying to acquire lock:", f" ({lock.name}) at:",
                           *callsite.indented(callsite.call_chain()),
                           "but task is already holding lock:", f" ({holding.name})",
                           " *** DEADLOCK ***", *_held_lines(t)])


def _held_lines(t: Any) -> list[str]:
    held = t.local.get(HELD) or []
    lines = [f"{len(held)} lock{'s' if len(held) != 1 else ''} held by {t.name}:"]
    lines += [f" #{i}: ({lock.name}){_mode(read)}" for i, (lock, read) in enumerate(held)]
    return lines


# ----------------------------------------------------------------- assertions
def lockdep_is_held(lock: Any) -> bool:
    """Does the running thread hold ``lock`` (in any mode)?  True outside threads."""
    t = current_thread()
    if t is None:
        return True
    return any(h is lock for h, _ in t.local.get(HELD) or ())


def lockdep_is_held_type(lock: Any, read: bool) -> bool:
    t = current_thread()
    if t is None:
        return True
    return any(h is lock and r == read for h, r in t.local.get(HELD) or ())


def lockdep_assert_held(lock: Any) -> None:
    """WARN unless the running thread holds ``lock``."""
    if debug_locks() and not lockdep_is_held(lock):
        bug.WARN_ON(True)


def lockdep_assert_held_write(lock: Any) -> None:
    """WARN unless the running thread holds ``lock`` exclusively."""
    if debug_locks() and not lockdep_is_held_type(lock, False):
        bug.WARN_ON(True)


def lockdep_assert_held_read(lock: Any) -> None:
    """WARN unless the running thread holds ``lock`` for read."""
    if debug_locks() and not lockdep_is_held_type(lock, True):
        bug.WARN_ON(True)


# ------------------------------------------------------------- atomic context
def atomic_holds(t: Any) -> int:
    """Locks ``t`` holds that make atomic context (not sleeping locks such as a mutex)."""
    held = t.local.get(HELD)
    if not held:
        return 0
    return sum(1 for lock, _ in held if not getattr(lock, "sleeping", False))


def preempt_count() -> int:
    """Spinlocks and rwlocks the running thread holds (the model's preempt count)."""
    t = current_thread()
    return atomic_holds(t) if t is not None else 0


def in_atomic() -> bool:
    """True while the running thread holds a spinlock or rwlock."""
    return preempt_count() > 0


def rcu_read_lock_nesting(t: Any = None) -> int:
    t = t if t is not None else current_thread()
    if t is None:
        return 0
    reader = t.local.get(RCU)
    return reader.nesting if reader is not None else 0


def rcu_read_lock_held() -> bool:
    """Is the running thread in an RCU read-side section?  True outside threads."""
    t = current_thread()
    return t is None or rcu_read_lock_nesting(t) > 0


def held_lines(t: Any) -> list[str]:
    """Lockdep's "N locks held by T:" lines, for other reports."""
    return _held_lines(t)


# ------------------------------------------------------- return to user space
def read_sections(t: Any) -> list[str]:
    """The RCU and SRCU read-side sections ``t`` is inside, by domain name.

    With lockdep, ``rcu_read_lock`` and ``srcu_read_lock`` acquire a lockdep
    map (``rcu_lock_map``, ``ssp->dep_map``), so they count in the task's
    lockdep depth like locks; the model keeps their nesting in the readers."""
    out = []
    reader = t.local.get(RCU)
    if reader is not None and reader.nesting:
        out.append("rcu_read_lock")
    for key, reader in t.local.items():
        if isinstance(key, tuple) and key and key[0] == "srcu" and reader.nesting:
            out.append(reader.name.split(" reader ", 1)[0])
    return out


def lockdep_sys_exit(what: str = "") -> None:
    """``lockdep_sys_exit()`` (``kernel/locking/lockdep.c``, called on every
    return to user space from a syscall or ioctl): a task that leaves the
    kernel still holding a lock, or inside an RCU/SRCU read-side section, is
    lockdep's "WARNING: lock held when returning to user space!".

    The model calls it where a scenario action (an ioctl, a KVM_RUN, a host
    syscall that reaches the MMU notifier) returns: a function that returned
    with ``mmu_lock``, ``slots_lock`` or ``kvm->srcu`` still held is reported
    there, even when no later thread happens to wait for that lock.  Nothing
    is checked outside model threads or after ``debug_locks_off``."""
    t = current_thread()
    if t is None or not debug_locks():
        return
    held = t.local.get(HELD) or []
    sections = read_sections(t)
    if not held and not sections:
        return
    lines = _held_lines(t) if held else []
    lines += [f" read-side section of ({name}) still open" for name in sections]
    raise Finding("lockdep", "WARNING: lock held when returning to user space!",
                  function=what or callsite.model_function(),
                  details=[f"{t.name} is leaving the kernel with locks still held!"
                           + (f" (returning from {what})" if what else ""), *lines])
