"""Kernel state that outlives one model thread: per-execution data and global switches.

``debug_locks`` and ``panic_on_warn`` are switches: set inside an execution they
hold for that execution only; set outside (test or CLI setup) they change the
default for every later execution.

Some data must also be seen by the check that runs after an execution (the
slab registry for kmemleak, the pending ``call_rcu`` callbacks for
``rcu_barrier``), and by the setup that runs before it (objects allocated while
building the initial state).  The engine's ``execution_local()`` only exists
while the execution runs, so such data lives in a *scope*: setup allocations go
into a scope with no owner yet, the execution adopts it on first use, and it
stays current through the check.  A new scope starts when setup allocates again
or when an execution finds a scope owned by an earlier execution.

Simplification: a check reading a scope after an execution that never touched
it sees the previous execution's data (see the package docstring).
"""

from __future__ import annotations

from typing import Any

from ..engine import runtime

runtime.hide_frames_of(__file__)

_defaults: dict[str, bool] = {"panic_on_warn": True, "debug_locks": True}


def switch(name: str) -> bool:
    """Current value of a switch (execution override, else the default)."""
    if runtime.current_execution() is not None:
        value = runtime.execution_local().get(name)
        if value is not None:
            return value
    return _defaults[name]


def set_switch(name: str, value: bool) -> bool:
    """Set a switch for this execution (inside one) or as the default; return the old value."""
    old = switch(name)
    if runtime.current_execution() is not None:
        runtime.execution_local()[name] = bool(value)
    else:
        _defaults[name] = bool(value)
    return old


class _Scope:
    __slots__ = ("owner", "data")

    def __init__(self, owner: Any) -> None:
        self.owner = owner
        self.data: dict[str, Any] = {}


_scope = _Scope(None)


def scope(starting: bool = False) -> dict[str, Any]:
    """The data of the current scope.

    ``starting``: the caller creates state outside any execution (setup
    allocating), so a scope left by a finished execution is replaced.
    """
    global _scope
    ex = runtime.current_execution()
    sc = _scope
    if ex is not None:
        if sc.owner is ex:
            return sc.data
        if sc.owner is None:
            sc.owner = ex  # adopt what setup built
            return sc.data
        sc = _scope = _Scope(ex)
        return sc.data
    if starting and sc.owner is not None:
        sc = _scope = _Scope(None)
    return sc.data


def reset_scope() -> None:
    """Drop all scoped state (for a setup that wants a clean slate explicitly)."""
    global _scope
    _scope = _Scope(None)
