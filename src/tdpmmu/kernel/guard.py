"""Lock-protected state: every write asserts the lock that protects it.

The kernel says what a lock protects in comments at the fields ("protected by
mmu_lock") and asserts it with ``lockdep_assert_held`` in some of the writers.
The model states it as data (a kernel version's ``lock_contract``) and checks
it at *every* write, as if each writer began with the assertion: a write
without the lock is a lockdep WARNING naming the state and the lock, so an
unlocked change to a plain field is a finding even in an interleaving where
no other thread happens to look.

A :class:`Guard` is attached to a ``list_head`` (the list head and, from
``list_add`` on, every node on the list: ``__list_add``/``__list_del_entry``
check it) and may carry guards of fields of the structs on the list (a node's
owner checks them in its ``__setattr__``, see ``kvm_mmu_page``).  A struct not
yet on a guarded list is not yet published, so it needs no lock.  Structs with
guarded fields of their own (``struct kvm``) keep them in ``_lock_guards``.

Outside model threads (setup, checks) and after ``debug_locks_off`` nothing is
checked, as with lockdep itself.
"""

from __future__ import annotations

from typing import Any

from ..engine import runtime
from ..engine.runtime import current_thread
from . import bug, lockdep

runtime.hide_frames_of(__file__)


class Guard:
    """``what`` may only be written while ``lock`` is held (exclusively if ``write``)."""

    __slots__ = ("lock", "write", "what", "fields")

    def __init__(self, lock: Any, write: bool, what: str,
                 fields: dict[str, Guard] | None = None) -> None:
        self.lock = lock
        self.write = write
        self.what = what
        self.fields = fields or {}

    def __repr__(self) -> str:
        return f"Guard({self.what} by {self.lock.name})"


def check_write(guard: Guard, what: str | None = None) -> None:
    """``lockdep_assert_held(guard.lock)`` (``_write`` for an exclusive guard) at a write."""
    if current_thread() is None or not lockdep.debug_locks():
        return
    lock = guard.lock
    held = (lockdep.lockdep_is_held_type(lock, False) if guard.write
            else lockdep.lockdep_is_held(lock))
    if not held:
        mode = " for write" if guard.write else ""
        bug.WARN(True, "lockdep: %s written without %s held%s", what or guard.what,
                 lock.name, mode)


class Guarded:
    """A struct whose fields named in ``_lock_guards`` (field -> Guard) are checked
    at every assignment."""

    def __setattr__(self, name: str, value: Any) -> None:
        guards = self.__dict__.get("_lock_guards")
        if guards:
            g = guards.get(name)
            if g is not None:
                check_write(g)
        object.__setattr__(self, name, value)


def guard_fields(obj: Any, guards: dict[str, Guard]) -> None:
    """Install field guards on a :class:`Guarded` struct."""
    current = obj.__dict__.setdefault("_lock_guards", {})
    current.update(guards)
