"""A systematic concurrency-testing engine for Python model code.

Model threads are greenlets; every visible operation (a :class:`Var` load or
store, a lock operation of :mod:`tdpmmu.kernel`, anything that calls
:func:`visible`) is a scheduling point.  :func:`explore` runs the threads under
the interleavings a strategy chooses (``dfs``, ``dpor``, ``bounded``, ``pct``,
``random``) and :func:`replay` re-runs one from its schedule token.  The engine
knows nothing about KVM.
"""

from .access import (
    ACQUIRE,
    ACQUIRE_SHARED,
    READ,
    RELEASE,
    RELEASE_SHARED,
    UPDATE,
    WRITE,
    dependent,
    set_commuting_updates,
    update_mode,
)
from .explore import Result, Violation, explore, replay
from .runtime import (
    EngineError,
    Finding,
    SoftFinding,
    Step,
    choose,
    current_execution,
    current_thread,
    execution_local,
    hide_frames_of,
    mark,
    report,
    visible,
)
from .schedule import TokenError
from .strategies import STRATEGIES, ReplayMismatch
from .var import Var, cpu_relax, note_read

__all__ = [
    "ACQUIRE", "ACQUIRE_SHARED", "READ", "RELEASE", "RELEASE_SHARED", "STRATEGIES", "UPDATE",
    "WRITE",
    "EngineError", "Finding", "ReplayMismatch", "Result", "SoftFinding", "Step", "TokenError",
    "Violation",
    "Var", "choose", "cpu_relax", "current_execution", "current_thread", "dependent",
    "execution_local", "explore", "hide_frames_of", "mark", "note_read", "replay", "report",
    "set_commuting_updates", "update_mode", "visible",
]
