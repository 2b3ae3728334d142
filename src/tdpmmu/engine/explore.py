"""The public entry points: :func:`explore` and :func:`replay`."""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import runtime, watchdog
from . import schedule as tokens
from . import snapshots as _snapshots
from .runtime import EngineError, Execution, Finding, SoftFinding, Step, checking
from .strategies import (
    STRATEGIES,
    BoundedStrategy,
    DfsStrategy,
    DporStrategy,
    OptimalDporStrategy,
    PctStrategy,
    RandomStrategy,
    ReplayMismatch,
    ReplayStrategy,
    Strategy,
)
from .strategies.tree import TreeStrategy

ThreadSpec = Callable[[Any], Any] | tuple[str, Callable[[Any], Any]]
DEFAULT_SAMPLES = 1000  # executions of pct/random when max_executions is not given
MINIMIZE_SHORTER = 200  # executions spent looking for fewer steps at the minimal bound
# CPU seconds minimizing may take: a violation whose runs are long (a soft
# lockup costs the watchdog's threshold per run) keeps what was found by then.
MINIMIZE_CPU = 20.0


@dataclass
class Violation:
    """What broke, where, and the interleaving that breaks it."""

    kind: str
    message: str
    thread: str | None
    schedule: str
    trace: list[Step]
    function: str | None = None
    details: list[str] = field(default_factory=list)
    step: int | None = None
    preemptions: int = 0
    steps: int = 0
    root_cause: SoftFinding | None = None

    def signature(self) -> tuple[str, str | None]:
        """What makes two violations 'the same bug' for minimisation."""
        return (self.kind, self.function)


@dataclass
class Result:
    """Outcome of an exploration."""

    strategy: str
    executions: int
    complete: bool
    violation: Violation | None
    elapsed: float
    cut_by: str | None = None
    sleep_blocked: int = 0
    max_depth: int = 0
    steps: int = 0  # steps run in all (replayed prefixes included, snapshots' not)
    replayed_steps: int = 0  # steps that re-ran an explored prefix to a backtrack point
    snapshots: bool = False  # the search ran with snapshots (forked processes)
    snapshot_forks: int = 0  # forks it took (snapshots taken, executions resumed)

    @property
    def ok(self) -> bool:
        return self.violation is None


def _normalise_threads(threads: list[ThreadSpec]) -> list[tuple[str, Callable[[Any], Any]]]:
    out: list[tuple[str, Callable[[Any], Any]]] = []
    seen: set[str] = set()
    for i, spec in enumerate(threads):
        if isinstance(spec, tuple):
            name, fn = spec
        else:
            fn = spec
            name = getattr(fn, "__name__", None) or f"T{i}"
            if name == "<lambda>":
                name = f"T{i}"
        if name in seen:
            name = f"{name}#{i}"
        seen.add(name)
        if not callable(fn):
            raise TypeError(f"thread {name!r} is not callable")
        out.append((name, fn))
    return out


def _make_strategy(strategy: str | Strategy, max_executions: int | None,
                   preemption_bound: int | None, seed: int) -> Strategy:
    if isinstance(strategy, Strategy):
        return strategy
    samples = max_executions if max_executions is not None else DEFAULT_SAMPLES
    if strategy == "dfs":
        return DfsStrategy()
    if strategy == "dpor":
        return OptimalDporStrategy()
    if strategy == "source-dpor":
        return DporStrategy()
    if strategy == "bounded":
        return BoundedStrategy(2 if preemption_bound is None else preemption_bound)
    if strategy == "pct":
        return PctStrategy(seed=seed, executions=samples)
    if strategy == "random":
        return RandomStrategy(seed=seed, executions=samples)
    raise ValueError(f"unknown strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")


def _run_one(setup: Callable[[], Any], threads: list[tuple[str, Callable[[Any], Any]]],
             strat: Strategy, max_steps: int, check: Callable[[Any], Any] | None,
             invariant: Callable[[Any], None] | None, trace: bool = False,
             observe: Callable[[Any], Any] | None = None,
             snap: Any = None) -> tuple[Execution, Violation | None]:
    runtime.reset_serials()
    with watchdog.armed():  # a loop in setup or a step is a soft lockup
        state = setup()
        ex = Execution(state, threads, strat, max_steps, invariant, trace, observe)
        ex.snap = snap
        if isinstance(strat, TreeStrategy) and strat.prefix_checked:
            # Deterministic replay: the decisions before the branch lead to states
            # an earlier execution already checked, and none broke the invariant
            # (a broken one ends the search; ``prefix_checked`` covers a resumed one).
            ex.checked_upto = strat.branch
        ex.run()
    if ex.soft and isinstance(strat, TreeStrategy):
        strat.prefix_checked = False
    if ex.error is not None:
        raise ex.error
    if ex.sleep_blocked:
        return ex, None
    finding = ex.finding
    if finding is None and check is not None:
        try:
            with checking(ex):
                check(state)
        except AssertionError as exc:
            finding = Finding("assertion", str(exc) or "check failed", "check")
        except Finding as f:
            finding = f
        except Exception as exc:  # the check broke on this state: a finding, not a crash
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
            finding = Finding("exception", f"{type(exc).__name__}: {exc} (in check)", "check",
                              [line.rstrip() for line in tb])
        if finding is not None:
            ex.finding_step = ex.nsteps
    root = None
    if finding is not None:
        if ex.soft and (ex.soft[0].step <= (ex.finding_step or 0)):
            root = ex.soft[0]
        return ex, _violation(ex, finding, ex.finding_thread, ex.finding_step, root)
    if ex.soft:
        s = ex.soft[0]
        return ex, _violation(ex, Finding(s.kind, s.message, s.function, s.details),
                              s.thread, s.step, None)
    return ex, None


def _violation(ex: Execution, f: Finding, thread: str | None, step: int | None,
               root: SoftFinding | None) -> Violation:
    return Violation(kind=f.kind, message=f.message, thread=thread,
                     schedule=tokens.encode(ex.decisions, ex.step_bound_hit), trace=ex.steps,
                     function=f.function, details=list(f.details), step=step,
                     preemptions=ex.preemptions, steps=ex.nsteps, root_cause=root)


def explore(setup: Callable[[], Any], threads: list[ThreadSpec], *, strategy: str = "dpor",
            max_executions: int | None = None, max_steps: int = 10_000,
            preemption_bound: int | None = None, seed: int = 0,
            check: Callable[[Any], Any] | None = None,
            invariant: Callable[[Any], None] | None = None,
            minimize: bool = True, minimize_budget: int = 2000,
            progress: Callable[[int], None] | None = None,
            observe: Callable[[Any], Any] | None = None,
            stop: Callable[[], str | None] | None = None,
            snapshots: bool = False) -> Result:
    """Run ``threads`` over fresh ``setup()`` state under the strategy's interleavings.

    Stops at the first violation (a finding raised in a thread, a deadlock, the
    step bound, a failed ``check``, or a broken ``invariant``, which is checked
    after every step without stopping the run).  With ``minimize`` the
    violation is then replaced by one of the same kind and function with fewer
    preemptions, when a preemption-bounded search finds one within
    ``minimize_budget`` executions.  ``stop``, asked between executions, ends the
    search early (incomplete, ``cut_by`` its answer) when it returns a reason; the
    strategy is then left as it was after the last execution, so a tree strategy
    handed in can be saved and resumed.

    ``snapshots`` (tree strategies, where ``os.fork`` is usable) reaches each
    backtrack point from a forked snapshot of the execution instead of
    re-running its prefix from ``setup()``: the same executions and results,
    but ``check``, ``invariant`` and ``stop`` run in other processes (see
    :mod:`.snapshots`).
    """
    specs = _normalise_threads(threads)
    strat = _make_strategy(strategy, max_executions, preemption_bound, seed)
    start = time.perf_counter()
    search = _Search()
    forker = None
    if snapshots and isinstance(strat, TreeStrategy) and _snapshots.usable():
        forker = _snapshots.Forker(strat, progress)
        if isinstance(strat, DporStrategy):
            strat.step_accs = {}

    def loop() -> None:
        _search(search, setup, specs, strat, max_steps, check, invariant, max_executions,
                progress, stop, forker)

    if forker is None:
        loop()
    else:
        forker.run(search, loop)
        if isinstance(strat, DporStrategy):
            strat.step_accs = None
    violation = search.violation
    cut_by = search.cut_by
    elapsed = time.perf_counter() - start
    complete = violation is None and cut_by is None and strat.complete
    if violation is not None:
        if minimize and violation.preemptions > 0:
            violation = _minimize(setup, specs, violation, max_steps, check, invariant,
                                  minimize_budget)
        violation = _traced(setup, specs, violation, max_steps, check, invariant, observe)
    return Result(strategy=strat.name, executions=search.executions, complete=complete,
                  violation=violation, elapsed=elapsed,
                  cut_by=cut_by or strat.cut_by, sleep_blocked=search.blocked,
                  max_depth=search.depth, steps=search.steps, replayed_steps=search.replayed,
                  snapshots=forker is not None, snapshot_forks=search.forks)


class _Search:
    """The counters of one exploration (plain data: a snapshot hand-off carries them)."""

    def __init__(self) -> None:
        self.executions = 0
        self.blocked = 0
        self.depth = 0
        self.steps = 0  # steps run (a snapshot's prefix is not run again)
        self.replayed = 0  # of those, steps before the branch point (re-run)
        self.cpu = 0.0  # CPU time of the search processes (with snapshots)
        self.forks = 0  # snapshot processes forked (taken and resumed)
        self.violation: Violation | None = None
        self.cut_by: str | None = None


def _search(search: _Search, setup: Callable[[], Any], specs: list, strat: Strategy,
            max_steps: int, check: Callable[[Any], Any] | None,
            invariant: Callable[[Any], None] | None, max_executions: int | None,
            progress: Callable[[int], None] | None, stop: Callable[[], str | None] | None,
            forker: _snapshots.Forker | None) -> None:
    """Run executions until the strategy is done, a violation, or a bound.

    With snapshots this runs in a chain of processes: each execution but the
    first continues in a process forked from a snapshot (returning here from
    deep inside the execution), and the loop ends in the process that ran the
    last one (see :mod:`.snapshots`).
    """
    tree = isinstance(strat, TreeStrategy)
    while True:
        if max_executions is not None and search.executions >= max_executions \
                and strat.name in ("dfs", "dpor", "bounded", "source-dpor"):
            search.cut_by = "max_executions"
            break
        if forker is not None and forker.caller_gone():
            os._exit(0)
        if stop is not None:
            search.cut_by = stop()
            if search.cut_by is not None:
                break
        if not strat.begin():
            break
        branch = max(strat.branch, 0) if tree else 0
        if forker is not None:
            forker.handoff(branch)  # does not return when a snapshot takes over
            forker.start(branch, 0)
        ex, violation = _run_one(setup, specs, strat, max_steps, check, invariant,
                                 snap=forker)
        strat.end(ex)
        search.executions += 1
        search.depth = max(search.depth, ex.nsteps)
        search.steps += ex.nsteps - ex.skipped_steps
        if tree:
            branch = max(strat.branch, 0)
            if branch > ex.resumed_at:
                search.replayed += sum(1 for d in ex.decisions[ex.resumed_at:branch]
                                       if not d & 1)
        if ex.sleep_blocked:
            search.blocked += 1
        if forker is not None:
            forker.tick(search.executions)
        elif progress is not None:
            progress(search.executions)
        if violation is not None:
            search.violation = violation
            break


def _minimize(setup: Callable[[], Any], specs: list, found: Violation, max_steps: int,
              check: Callable[[Any], Any] | None, invariant: Callable[[Any], None] | None,
              budget: int) -> Violation:
    """Look for the same bug with the fewest preemptions, then the fewest steps.

    Preemption-bounded searches run with bounds 0, 1, ... up to the found
    violation's count; at the first bound that reproduces the bug (kind and
    function), a few more executions of that bound look for a shorter one.
    ``budget`` caps the executions spent in all, ``MINIMIZE_CPU`` their CPU time.
    """
    best = found
    deadline = time.process_time() + MINIMIZE_CPU
    for bound in range(found.preemptions + 1):
        strat = BoundedStrategy(bound)
        extra = None  # executions left at this bound once a match was found
        while budget > 0 and strat.begin() and extra != 0:
            if time.process_time() > deadline:
                return best
            budget -= 1
            if extra is not None:
                extra -= 1
            _, v = _run_one(setup, specs, strat, max_steps, check, invariant)
            if v is not None and v.signature() == found.signature():
                if (v.preemptions, v.steps) < (best.preemptions, best.steps):
                    best = v
                if extra is None:
                    extra = min(budget, MINIMIZE_SHORTER)
        if extra is not None or budget <= 0:
            break
    return best


def _traced(setup: Callable[[], Any], specs: list, v: Violation, max_steps: int,
            check: Callable[[Any], Any] | None, invariant: Callable[[Any], None] | None,
            observe: Callable[[Any], Any] | None) -> Violation:
    """Re-run a violation's schedule with tracing on, to fill in its trace."""
    # Our own token: its length is bounded by the run that made it.
    decisions = tokens.decode(v.schedule, max(max_steps, tokens.DEFAULT_MAX_STEPS))
    _, traced = _run_one(setup, specs, ReplayStrategy(decisions), max_steps, check,
                         invariant, trace=True, observe=observe)
    if traced is None:  # pragma: no cover - replay is deterministic
        raise EngineError("replaying the violation did not reproduce it: the model is "
                          "not deterministic")
    return traced


def replay(setup: Callable[[], Any], threads: list[ThreadSpec], schedule: str,
           check: Callable[[Any], Any] | None = None, *, max_steps: int = 1_000_000,
           invariant: Callable[[Any], None] | None = None,
           observe: Callable[[Any], Any] | None = None) -> Result:
    """Run exactly the interleaving of a schedule token, with a full trace.

    Raises :class:`~tdpmmu.engine.schedule.TokenError` for a corrupt token and
    :class:`~tdpmmu.engine.strategies.ReplayMismatch` when it does not fit
    (including a program that ends before the schedule does).  A token of an
    execution cut by the step bound replays up to that same step, whatever
    ``max_steps`` says; a token with more than ``max_steps`` steps is rejected
    before it is expanded.
    """
    specs = _normalise_threads(threads)
    decisions, step_bound = tokens.decode_full(schedule, max_steps)
    if step_bound:
        max_steps = sum(1 for d in decisions if not d & 1)
    strat = ReplayStrategy(decisions)
    start = time.perf_counter()
    strat.begin()
    ex, violation = _run_one(setup, specs, strat, max_steps, check, invariant, trace=True,
                             observe=observe)
    if strat.pos < len(decisions):
        raise ReplayMismatch(f"the program ended after decision {strat.pos} of the "
                             f"schedule's {len(decisions)}")
    return Result(strategy="replay", executions=1, complete=True, violation=violation,
                  elapsed=time.perf_counter() - start, max_depth=ex.nsteps)
