"""Optimal DPOR: one execution per Mazurkiewicz trace, checked against a brute-force counter.

The counter (``trace_counter``) runs every interleaving by DFS and groups them
by Foata normal form under its own independence relation, not the engine's.
On programs of loads, stores and exclusive locks the optimal search must run
exactly one execution per trace, none of them sleep-set blocked, and reach the
final states of all traces (for the random programs: those of DFS);
source-DPOR (``source-dpor``) must reach them too, with exactly one complete
execution per trace besides its sleep-set-blocked ones.
"""

from __future__ import annotations

import pytest
from engine_models import PState, build, indexer, lastzero, locked_counter, outcomes, two_locks
from hypothesis import HealthCheck, assume, given, settings
from test_engine_differential import programs
from trace_counter import count_traces

from tdpmmu.engine import explore
from tdpmmu.engine.strategies import DporStrategy, OptimalDporStrategy

CLASSICS = {
    "lastzero(4)": lambda: lastzero(4),
    "lastzero(5)": lambda: lastzero(5),
    "indexer(3, table 6)": lambda: indexer(3, 6, 2),
    "indexer(4, table 8)": lambda: indexer(4, 8, 2),
    "locked counter (3 x 2)": lambda: locked_counter(3, 2),
    "two locks (3 threads)": lambda: two_locks(3),
}


def finals(prog, strat) -> tuple[set, object]:
    seen: set = set()
    r = explore(prog.setup, prog.threads, strategy=strat,
                check=lambda s: seen.add(prog.snapshot(s)), minimize=False)
    assert r.violation is None and r.complete
    return seen, r


@pytest.mark.parametrize("name", list(CLASSICS))
def test_optimal_dpor_runs_one_execution_per_trace(name):
    prog = CLASSICS[name]()
    traces, all_finals = count_traces(prog.setup, prog.threads, snapshot=prog.snapshot)
    opt_finals, opt = finals(prog, OptimalDporStrategy())
    assert opt.sleep_blocked == 0
    assert opt.executions == traces, (name, opt.executions, traces)
    assert opt_finals == all_finals
    src_finals, src = finals(prog, DporStrategy())
    assert src_finals == all_finals
    assert src.executions - src.sleep_blocked == traces  # its complete ones: one per trace
    assert src.executions >= opt.executions


def _settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@_settings(80)
@given(programs(("load", "store", "lock")))
def test_optimal_dpor_executions_equal_traces_on_random_programs(p):
    """Random programs of loads, stores and exclusive locks: executions == traces,
    none blocked, and the final states of all traces."""
    program, nvars, nlocks = p
    setup, threads = build(program, nvars, nlocks)
    try:
        traces, all_finals = count_traces(setup, threads, max_executions=20_000,
                                          snapshot=PState.snapshot)
    except AssertionError as exc:  # a deadlocking program, or one too big to count
        assume(False)
        raise exc
    opt = outcomes(program, nvars, nlocks, "dpor")
    assert opt.complete and not opt.kinds
    assert {f for _, f in opt.finals} == all_finals, program
    assert opt.executions == traces, (program, opt.executions, traces)


@_settings(80)
@given(programs(("load", "store", "lock", "add")))
def test_optimal_dpor_executions_equal_traces_with_commuting_updates(p):
    """Adds commute with each other (the counter's relation says so too): one
    execution per trace, and the final states of all traces."""
    program, nvars, nlocks = p
    setup, threads = build(program, nvars, nlocks)
    try:
        traces, all_finals = count_traces(setup, threads, max_executions=20_000,
                                          snapshot=PState.snapshot)
    except AssertionError as exc:
        assume(False)
        raise exc
    opt = outcomes(program, nvars, nlocks, "dpor")
    assert opt.complete and not opt.kinds
    assert {f for _, f in opt.finals} == all_finals, program
    assert opt.executions == traces, (program, opt.executions, traces)


def test_adds_of_three_threads_to_one_counter_commute():
    """Three threads each add to one counter and a fourth reads it: with
    commuting updates a trace is the set of adds before the read (2**3 = 8
    traces, as the counter says); declared as writes the adds' order counts
    too (3! orders x 4 places of the read = 24).  Same final states."""
    from tdpmmu.engine import set_commuting_updates
    program = ((("add", 0, 1),), (("add", 0, 1),), (("add", 0, 2),), (("load", 0, 0),))
    traces, all_finals = count_traces(*build(program, 1, 1), snapshot=PState.snapshot)
    fine = outcomes(program, 1, 1, "dpor")
    old = set_commuting_updates(False)
    try:
        coarse = outcomes(program, 1, 1, "dpor")
    finally:
        set_commuting_updates(old)
    assert fine.complete and coarse.complete
    assert {f for _, f in fine.finals} == {f for _, f in coarse.finals} == all_finals
    assert (traces, fine.executions, coarse.executions) == (8, 8, 24)
