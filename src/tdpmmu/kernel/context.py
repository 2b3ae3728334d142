"""Kernel state that outlives one model thread: per-execution data and global switches.

``debug_locks`` and ``panic_on_warn`` are switches: set inside an execution they
hold for that execution only; set outside (test or CLI setup) they change the
default for every later execution.

Some data must also be seen by the check that runs after an execution (the
slab registry for kmemleak, the pending ``call_rcu`` callbacks for
``rcu_barrier``), and by the setup that runs before it (objects allocated while
building the initial state).  The engine's ``execution_local()`` only exists
while the execution runs, so such data lives in a *scope* shared by setup,
execution and check: they are recognised by the engine frame that runs all
three (see ``_driver``).  This leans on the engine's structure; an engine
hook making ``execution_local()`` available in setup and check would replace it.
"""

from __future__ import annotations

import os
import sys
from types import FrameType
from typing import Any

from greenlet import getcurrent

from ..engine import runtime

runtime.hide_frames_of(__file__)

_defaults: dict[str, bool] = {"panic_on_warn": True, "debug_locks": True, "kasan": True}


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
    __slots__ = ("owner", "driver", "data", "checked")

    def __init__(self, owner: Any, driver: FrameType | None = None) -> None:
        self.owner = owner  # the Execution using it, or None while setup builds it
        self.driver = driver  # the engine frame running setup, execution and check
        self.data: dict[str, Any] = {}
        self.checked = False  # read by a check after its execution (fallback rule)


_scope = _Scope(None)
_ENGINE_DIR = os.path.dirname(runtime.__file__)
_RUNTIME_FILE = runtime.__file__


def _driver(frame: FrameType | None) -> FrameType | None:
    """The engine frame that runs one execution with its setup and check.

    That is the innermost engine frame outside the runtime (the explore
    module's run-one-execution function).  Its identity ties setup, threads
    and check of one execution together without any hook in the engine.
    """
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(_ENGINE_DIR) and name != _RUNTIME_FILE:
            return frame
        frame = frame.f_back
    return None


def _driver_of(ex: Any) -> FrameType | None:
    local = runtime.execution_local()
    if "kernel.driver" in local:
        return local["kernel.driver"]
    main = ex.main
    frame = sys._getframe(2) if main is None or main is getcurrent() else main.gr_frame
    drv = local["kernel.driver"] = _driver(frame)
    return drv


def scope(starting: bool = False, checking: bool = False) -> dict[str, Any]:
    """The data of the current execution's scope.

    Setup, the execution and its check share one scope.  Normally they are
    recognised by the engine frame that runs them.  Where no such frame is
    found (primitives used outside ``explore``) a fallback rule applies:
    ``starting`` (setup creating state) replaces a scope left by an execution
    or read by a check, and ``checking`` (a check reading, e.g. kmemleak)
    marks the scope as checked.
    """
    global _scope
    ex = runtime.current_execution()
    sc = _scope
    if ex is not None:
        if sc.owner is ex:
            return sc.data
        drv = _driver_of(ex)
        if sc.owner is None and (sc.driver is drv if drv is not None else not sc.checked):
            sc.owner = ex  # adopt what setup built
            return sc.data
        sc = _scope = _Scope(ex, drv)
        return sc.data
    drv = _driver(sys._getframe(1))
    if drv is not None:
        if sc.driver is not drv:
            sc = _scope = _Scope(None, drv)
        return sc.data
    if starting and (sc.owner is not None or sc.checked):
        sc = _scope = _Scope(None)
    elif checking:
        sc.checked = True
    return sc.data


def reset_scope() -> None:
    """Drop all scoped state (for code driving executions without ``explore``)."""
    global _scope
    _scope = _Scope(None)
