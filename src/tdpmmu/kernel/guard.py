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


WAIVED = "guard.waived"  # thread.local key: depth of lock_contract_waived() sections


class lock_contract_waived:
    """``with lock_contract_waived():`` -- the writes of this thread inside are
    not checked against the lock contract.  For code the kernel itself
    exempts from its lockdep assertion (e.g. 6.4's
    ``kvm_tdp_mmu_invalidate_all_roots`` when the VM has no users left); the
    caller states the kernel's condition."""

    def __enter__(self) -> None:
        t = current_thread()
        if t is not None:
            t.local[WAIVED] = t.local.get(WAIVED, 0) + 1

    def __exit__(self, *exc: object) -> None:
        t = current_thread()
        if t is not None:
            t.local[WAIVED] -= 1


class Guard:
    """``what`` may only be written while one of ``options`` is held: each a
    ``(lock, exclusive)`` pair (e.g. ``mmu_lock`` for write, or another lock)."""

    __slots__ = ("options", "what", "fields")

    def __init__(self, options: list[tuple[Any, bool]], what: str,
                 fields: dict[str, Guard] | None = None) -> None:
        self.options = options
        self.what = what
        self.fields = fields or {}

    def __repr__(self) -> str:
        return f"Guard({self.what} by {describe(self.options)})"


def describe(options: list[tuple[Any, bool]]) -> str:
    return " or ".join(f"{lock.name}{' for write' if write else ''}" for lock, write in options)


def check_write(guard: Guard, what: str | None = None) -> None:
    """``lockdep_assert_held`` (``_write`` for an exclusive option) at a write:
    WARN unless one of the guard's options is held."""
    t = current_thread()
    if t is None or not lockdep.debug_locks():
        return
    if t.local.get(WAIVED):
        return
    for lock, write in guard.options:
        if lockdep.lockdep_is_held_type(lock, False) if write else lockdep.lockdep_is_held(lock):
            return
    bug.WARN(True, "lockdep: %s written without %s held", what or guard.what,
             describe(guard.options))


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
