"""Snapshots (``explore(..., snapshots=True)``): the search of the replaying one.

With snapshots each backtrack point is reached from a forked copy of the
execution instead of re-running its prefix from ``setup()``.  These tests run
the same searches with and without and compare everything a caller sees:
executions, ``complete``, sleep-blocked counts, depth, the violation and its
token, and the set of final states (written by ``check`` to a file: ``check``
runs in the search processes).  They also check that fewer steps are re-run,
that an interrupted strategy object resumes the same way, and that a failure
in a search process reaches the caller.
"""

from __future__ import annotations

import os
import sys

import pytest
from engine_models import build, indexer, lastzero, locked_counter, two_locks
from hypothesis import HealthCheck, given, settings
from test_engine_differential import programs

from tdpmmu.engine import Var, explore
from tdpmmu.engine.strategies import DfsStrategy, DporStrategy, OptimalDporStrategy

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "win32",
                                reason="snapshots need os.fork")

STRATEGIES = {"dfs": DfsStrategy, "dpor": OptimalDporStrategy, "source-dpor": DporStrategy}


def _run(setup, threads, strategy, snapshots, path, max_executions=None, snapshot_of=None):
    """Explore to the end (past violations, resuming the strategy object) and
    return what a caller sees, with the final states the check wrote."""
    strat = STRATEGIES[strategy]()
    if os.path.exists(path):
        os.unlink(path)

    def check(s):
        with open(path, "a") as f:
            f.write(repr(snapshot_of(s)) + "\n")

    seen = []
    executions = 0
    while True:
        left = None if max_executions is None else max_executions - executions
        r = explore(setup, threads, strategy=strat, check=check, minimize=False,
                    max_steps=10_000, max_executions=left, snapshots=snapshots)
        executions += r.executions
        v = r.violation
        seen.append((r.executions, r.complete, r.sleep_blocked, r.max_depth, r.cut_by,
                     None if v is None else (v.kind, v.schedule, v.steps)))
        if v is None:
            break
    finals = set()
    if os.path.exists(path):
        with open(path) as f:
            finals = set(f.read().splitlines())
    return seen, finals, r


@pytest.mark.parametrize("prog", [lastzero(3), indexer(3, size=4, msgs=1), locked_counter(2, 2),
                                  two_locks(2)], ids=lambda p: p.name)
@pytest.mark.parametrize("strategy", ["dpor", "source-dpor", "dfs"])
def test_same_search_with_and_without_snapshots(prog, strategy, tmp_path):
    cap = 60 if strategy == "dfs" else None
    plain = _run(prog.setup, prog.threads, strategy, False, tmp_path / "a", cap, prog.snapshot)
    snap = _run(prog.setup, prog.threads, strategy, True, tmp_path / "b", cap, prog.snapshot)
    assert snap[0] == plain[0]
    assert snap[1] == plain[1] and plain[1]
    assert snap[2].snapshots and not plain[2].snapshots
    assert snap[2].replayed_steps < plain[2].replayed_steps or plain[2].replayed_steps == 0


def _regs_snapshot(s):
    return s.snapshot()


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(programs(("load", "store", "lock", "rlock", "trylock", "cas", "wait", "choose")))
def test_drawn_programs_same_with_snapshots(tmp_path, p):
    """Random programs (locks, value choices, blocking waits, deadlocks and
    their violations): the same executions, tokens and final states."""
    program, nvars, nlocks = p
    setup, threads = build(program, nvars, nlocks)
    for strategy in ("dpor", "source-dpor"):
        plain = _run(setup, threads, strategy, False, tmp_path / "a", 150, _regs_snapshot)
        snap = _run(setup, threads, strategy, True, tmp_path / "b", 150, _regs_snapshot)
        assert snap[:2] == plain[:2], program


def test_a_violation_has_the_same_token_and_trace():
    def setup():
        return Var(0, "x")

    def inc(x):
        x.store(x.load() + 1)

    def check(x):
        assert x.value == 2, "lost update"

    plain = explore(setup, [inc, inc], check=check)
    snap = explore(setup, [inc, inc], check=check, snapshots=True)
    assert plain.violation is not None and snap.violation is not None
    assert snap.violation.schedule == plain.violation.schedule
    assert [s.label for s in snap.violation.trace] == [s.label for s in plain.violation.trace]
    assert snap.executions == plain.executions


def test_a_stopped_strategy_resumes_to_the_same_counts():
    prog = lastzero(3)
    whole = explore(prog.setup, prog.threads, strategy="dpor")
    strat = OptimalDporStrategy()
    first = explore(prog.setup, prog.threads, strategy=strat, max_executions=7,
                    snapshots=True)
    assert first.cut_by == "max_executions" and not first.complete
    rest = explore(prog.setup, prog.threads, strategy=strat, snapshots=True)
    assert rest.complete
    assert first.executions + rest.executions == whole.executions


def test_an_error_in_a_search_process_reaches_the_caller():
    def setup():
        raise ValueError("setup broke")

    with pytest.raises(ValueError, match="setup broke"):
        explore(setup, [lambda s: None], snapshots=True)


def test_progress_is_forwarded():
    prog = lastzero(3)
    ticks = []
    r = explore(prog.setup, prog.threads, strategy="dpor", snapshots=True,
                progress=ticks.append)
    assert r.complete
    assert all(0 < t <= r.executions for t in ticks)


def test_kvm_scenario_same_with_snapshots():
    """A KVM model (v5.10, the seed bug): same finding, token and counts."""
    from tdpmmu import checker
    plain = checker.check("v5.10", "next-root-deleted", max_executions=40).result
    snap = checker.check("v5.10", "next-root-deleted", max_executions=40,
                         snapshots=True).result
    assert plain.violation is not None
    assert snap.violation is not None
    assert (snap.executions, snap.complete, snap.violation.kind, snap.violation.schedule) == \
        (plain.executions, plain.complete, plain.violation.kind, plain.violation.schedule)
    plain = checker.check("v5.11", "notifier-vs-unload", max_executions=25).result
    snap = checker.check("v5.11", "notifier-vs-unload", max_executions=25,
                         snapshots=True).result
    assert (snap.executions, snap.complete, snap.violation, snap.max_depth) == \
        (plain.executions, plain.complete, plain.violation, plain.max_depth)
    assert snap.replayed_steps < plain.replayed_steps


def test_check_command_with_snapshots_prints_the_same_report():
    """``tdpmmu check --snapshots``: the same verdict, counts and replay token."""
    import subprocess

    def run(*extra):
        env = {**os.environ, "CI": "1"}
        proc = subprocess.run([sys.executable, "-m", "tdpmmu.cli", "check", "--kernel", "v5.10",
                               "--scenario", "next-root-deleted", "--json", *extra],
                              capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 1, proc.stderr
        return proc.stdout

    import json
    plain, snap = json.loads(run()), json.loads(run("--snapshots"))

    def strip(doc):  # timings differ
        if isinstance(doc, dict):
            return {k: strip(v) for k, v in doc.items() if "time" not in k and "elapsed" not in k}
        if isinstance(doc, list):
            return [strip(v) for v in doc]
        return doc
    assert strip(snap) == strip(plain)
