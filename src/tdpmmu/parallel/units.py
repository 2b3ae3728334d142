"""A check as a work unit: plain data a worker process (or a Ray task) can run.

The parent resolves and validates every spec first (bad input is a one-line
error before any worker starts); a worker rebuilds the model from the same
specs, runs it and hands back the :class:`~tdpmmu.engine.Result`.  The parent
then attaches its own copy of the model to make the :class:`CheckResult` the
reports expect (a model holds closures and does not travel between processes).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from .. import engine
from ..checker import CheckResult, build_model, check, resolve_kernel, resolve_scenario

# Set in a worker process by the backend: asks running checks to stop.
_STOP_EVENT: Any = None


@dataclass(frozen=True)
class CheckUnit:
    """One (kernel, scenario) check with every run option, as given by the user."""

    kernel: str
    scenario: str
    strategy: str = "dpor"
    knobs: tuple[tuple[str, str], ...] = ()
    max_executions: int | None = None
    seed: int = 0
    preemption_bound: int | None = None
    max_steps: int = 5_000
    kasan: bool = True
    panic_on_warn: bool = True
    deadline: float | None = None  # time.time() after which the search stops
    snapshots: bool = False  # forked snapshots instead of re-run prefixes (local workers)

    def stop_reason(self) -> str | None:
        """Why a search of this unit should stop now (None: go on)."""
        if _STOP_EVENT is not None and _STOP_EVENT.is_set():
            return "interrupted"
        if self.deadline is not None and time.time() >= self.deadline:
            return "time_limit"
        return None


def set_stop_event(event: Any) -> None:
    """Worker initializer: the event the coordinator sets to stop every worker."""
    global _STOP_EVENT
    _STOP_EVENT = event
    import signal
    # Ctrl-C goes to the whole process group; only the coordinator acts on it
    # (it sets the event), so a worker ends its search at an execution boundary.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_coordinator()


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_coordinator() -> None:
    """Linux: the worker is killed when the coordinator dies (a ``kill -9``, a
    test's timeout), instead of running its search on as an orphan.  Elsewhere
    the pool's own shutdown is all there is."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    import multiprocessing
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid != os.getppid():  # it died before the prctl
        os._exit(1)


def run_unit(unit: CheckUnit) -> engine.Result:
    """Run one check in this process (a worker) and return its engine result."""
    res = check(unit.kernel, unit.scenario, strategy=unit.strategy, knobs=dict(unit.knobs),
                max_executions=unit.max_executions, seed=unit.seed,
                preemption_bound=unit.preemption_bound, max_steps=unit.max_steps,
                kasan=unit.kasan, panic_on_warn=unit.panic_on_warn, stop=unit.stop_reason,
                snapshots=unit.snapshots)
    return res.result


def assemble(unit: CheckUnit, result: engine.Result) -> CheckResult:
    """The CheckResult the reports print, for a result computed elsewhere."""
    kernel_cls = resolve_kernel(unit.kernel)
    scen = resolve_scenario(unit.scenario)
    model = build_model(kernel_cls, scen, dict(unit.knobs))
    return CheckResult(kernel_cls.name, scen.name, result.strategy, dict(model.knobs), result,
                       model, unit.kernel, unit.scenario, unit.kasan, unit.panic_on_warn)


def unit_program(unit: CheckUnit) -> Any:
    """Split-search factory: the model of ``unit`` as a :class:`~.split.Program`.

    Runs in a worker, which runs nothing else, so the KASAN and panic_on_warn
    settings are set for the whole process.
    """
    from ..kernel import set_kasan, set_panic_on_warn
    from .split import Program
    model = build_model(resolve_kernel(unit.kernel), resolve_scenario(unit.scenario),
                        dict(unit.knobs))
    set_kasan(unit.kasan)
    set_panic_on_warn(unit.panic_on_warn)
    return Program(model.setup, model.threads, check=model.check, invariant=model.invariant,
                   observe=model.observe, max_steps=unit.max_steps, stop=unit.stop_reason)
