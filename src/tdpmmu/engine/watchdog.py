"""The soft-lockup watchdog: a model thread stuck without a visible operation.

The step bound (``max_steps``) counts visible operations, so a loop that never
reaches one (a variant spinning on a condition it reads without a scheduling
point, a retry whose exit condition can no longer change) would hang the
checker itself.  The kernel has a detector for its version of this, the
soft-lockup watchdog ("BUG: soft lockup - CPU#N stuck for 22s!"): here a
timer of the process's CPU time (``ITIMER_VIRTUAL``, so a busy machine or a
sleep does not count) checks whether the execution took a step since its last
tick; after ``threshold`` seconds of CPU inside one step of a model thread (or
in the scenario's setup without a visible operation), a ``livelock`` finding
is raised there, at the code it is looping in.

The timer runs only while an execution is set up and runs (:func:`armed`), in the main
thread of the process (signals are delivered there; elsewhere nothing is
armed), and never interrupts the engine's own code: a tick that lands there
waits for the next.  Its previous handler and timer are restored after.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import traceback
from collections.abc import Iterator
from typing import Any

from . import runtime


def _threshold_from_env() -> float:
    """``TDPMMU_SOFT_LOCKUP`` (seconds, 0: off) sets the default, like the
    kernel's ``watchdog_thresh``; read once per process (workers inherit it)."""
    text = os.environ.get("TDPMMU_SOFT_LOCKUP", "")
    try:
        seconds = float(text) if text else DEFAULT_THRESHOLD
    except ValueError:
        seconds = DEFAULT_THRESHOLD
    return seconds if seconds >= 0 else DEFAULT_THRESHOLD


DEFAULT_THRESHOLD = 10.0
# Seconds of CPU one step of a model thread may take (see set_soft_lockup_threshold).
_THRESHOLD = [_threshold_from_env()]
_TICKS = 8  # ticks per threshold: the finding comes within 1/8 of it after


def set_soft_lockup_threshold(seconds: float) -> float:
    """Set the CPU seconds one step may take before it is a soft lockup; returns
    the old value (0 disables the watchdog)."""
    if seconds < 0:
        raise ValueError("the soft-lockup threshold is a number of seconds >= 0")
    old, _THRESHOLD[0] = _THRESHOLD[0], float(seconds)
    return old


class _State:
    armed = False
    key: tuple[int, int] | None = None  # (execution id, its step count) at the last tick
    ticks = 0


def _on_tick(_signum: int, frame: Any) -> None:
    ex = runtime.current_execution()
    if ex is None:  # the scenario's setup (unobserved visible operations count)
        key, who = (0, runtime.unobserved_operations()), "setup"
    else:
        t = runtime.current_thread()
        if t is None:
            return  # the engine between two steps
        key, who = (id(ex), ex.nsteps), t.name
    if key != _State.key:
        _State.key, _State.ticks = key, 0
        return
    _State.ticks += 1
    if _State.ticks < _TICKS or frame is None \
            or frame.f_code.co_filename.startswith(runtime._ENGINE_DIR):
        return  # not yet, or in the engine's bookkeeping: the next tick decides
    _State.key, _State.ticks = None, 0
    where = [f for f in traceback.extract_stack(frame)
             if not f.filename.startswith(runtime._ENGINE_DIR)][-8:]
    raise runtime.Finding(
        "livelock",
        f"BUG: soft lockup - {who} stuck for {_THRESHOLD[0]:g}s of CPU without a "
        "visible operation (a loop no other thread can end)",
        where[-1].name if where else None,
        [f"  {f.name} ({f.filename}:{f.lineno})" for f in reversed(where)])


def _start_timer() -> tuple[float, float]:
    """Tick every 1/_TICKS of the threshold from now; returns the timer it replaced."""
    tick = _THRESHOLD[0] / _TICKS
    _State.key, _State.ticks = None, 0
    return signal.setitimer(signal.ITIMER_VIRTUAL, tick, tick)


@contextlib.contextmanager
def armed() -> Iterator[None]:
    """Watch the execution run inside the block (re-entrant; a no-op outside
    the main thread or with the watchdog disabled)."""
    threshold = _THRESHOLD[0]
    if _State.armed or not threshold or threading.current_thread() is not threading.main_thread():
        yield
        return
    old_handler = signal.signal(signal.SIGVTALRM, _on_tick)
    old_timer = _start_timer()
    _State.armed = True
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, *old_timer)
        signal.signal(signal.SIGVTALRM, old_handler)
        _State.armed = False


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No timer inside the block: a process spawned there (fork and exec, as a
    worker pool does) would keep the interval timer across the exec but not
    the handler, and die of the first SIGVTALRM."""
    if not _State.armed:
        yield
        return
    value, interval = signal.setitimer(signal.ITIMER_VIRTUAL, 0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, value or interval, interval)


def after_fork() -> None:
    """In a child forked inside an armed block: a fork does not inherit the
    parent's interval timers, so start this process's own."""
    if _State.armed:
        _start_timer()


__all__ = ["after_fork", "armed", "paused", "set_soft_lockup_threshold"]
