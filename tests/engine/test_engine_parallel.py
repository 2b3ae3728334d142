"""One search split across worker processes (tdpmmu.parallel.split) against -j 1.

Units are subtrees handed out by prefix; backtrack points a worker adds above
its subtree go back to the coordinator.  The split search must reach the same
final states, be as complete, and run at most 10% more executions than the
serial one (small budgets force many splits).
"""

from __future__ import annotations

import pytest
from engine_models import PState, build, outcomes
from hypothesis import HealthCheck, assume, given, settings
from test_engine_differential import programs

from tdpmmu.parallel.backend import LocalBackend
from tdpmmu.parallel.split import LOOKAHEAD, SPLIT_BUDGET, Program, ProgramRef, explore_split


def engine_program(program: tuple, nvars: int, nlocks: int) -> Program:
    """Factory run in each worker (imported by name): the program and its final states."""
    setup, threads = build(program, nvars, nlocks)
    seen: set = set()

    def check(s: PState) -> None:
        seen.add(("ok", s.snapshot()))

    def finals() -> set:
        out = set(seen)
        seen.clear()
        return out

    return Program(setup, threads, check=check, observe=PState.snapshot, finals=finals)


def lastzero(n: int) -> tuple:
    """T0 reads a[0..n]; thread i reads a[i-1] and writes a[i] from it."""
    t0 = tuple(("load", i, 0) for i in range(n + 1))
    ts = [(("load", i - 1, 0), ("store", i, ("r", 0, 1))) for i in range(1, n + 1)]
    return (t0, *ts), n + 1, 0


PROGRAMS = {
    "lastzero(3)": lastzero(3),
    "locked counters": (((("lock", 0), ("load", 0, 0), ("store", 0, ("r", 0, 1)),
                          ("unlock", 0)),) * 3, 1, 1),
    "loads, stores, locks mixed": (
        ((("load", 0, 0), ("store", 1, ("c", 1)), ("load", 1, 1)),
         (("store", 0, ("c", 2)), ("lock", 0), ("store", 1, ("c", 3)), ("unlock", 0)),
         (("lock", 0), ("load", 1, 0), ("unlock", 0), ("store", 0, ("c", 5)))), 2, 1),
    "value choices": (
        ((("choose", 0), ("store", 0, ("r", 0, 1))),
         (("load", 0, 0), ("store", 1, ("r", 0, 1))),
         (("load", 1, 0), ("choose", 1), ("store", 0, ("r", 1, 2)))), 2, 0),
}


@pytest.fixture(scope="module")
def backend():
    with LocalBackend(2) as be:
        yield be


@pytest.mark.parametrize("strategy", ["dpor", "source-dpor", "dfs"])
@pytest.mark.parametrize("name", list(PROGRAMS))
def test_split_search_equals_serial(backend, name, strategy):
    program, nvars, nlocks = PROGRAMS[name]
    if strategy == "dfs" and name == "lastzero(3)":
        pytest.skip("dfs of lastzero(3) is 18900 executions: too slow for CI")
    serial = outcomes(program, nvars, nlocks, strategy)
    assert serial.complete and not serial.kinds
    for budget in (1, 10, SPLIT_BUDGET):  # a split after every execution, many, the default
        out = explore_split(ProgramRef(f"{__name__}:engine_program", (program, nvars, nlocks)),
                            backend, strategy, budget=budget)
        r = out.result
        assert r.violation is None
        assert r.complete
        assert out.finals == serial.finals
        assert out.units > 1 or serial.executions <= budget
        assert serial.executions <= r.executions <= 1.1 * serial.executions, \
            (r.executions, serial.executions)


def test_split_search_finds_the_violation(backend):
    racy = ((("load", 0, 0), ("store", 0, ("r", 0, 1))),) * 2

    out = explore_split(ProgramRef(f"{__name__}:racy_program", (racy,)), backend, "source-dpor",
                        budget=1)
    assert out.result.violation is not None
    assert out.result.violation.kind == "assertion"
    assert not out.result.complete


def racy_program(program: tuple) -> Program:
    setup, threads = build(program, 1, 0)

    def check(s: PState) -> None:
        assert s.vars[0].value == 2, "lost update"

    return Program(setup, threads, check=check, observe=PState.snapshot)


def classic_program(name: str) -> Program:
    """Factory run in each worker: a classic program of test_engine_optimal and its
    final states (its own snapshot of the state)."""
    from test_engine_optimal import CLASSICS
    prog = CLASSICS[name]()
    seen: set = set()

    def finals() -> set:
        out = set(seen)
        seen.clear()
        return out

    return Program(prog.setup, prog.threads, check=lambda s: seen.add(prog.snapshot(s)),
                   finals=finals)


CLASSIC_SPLITS = ["lastzero(4)", "lastzero(5)", "indexer(3, table 6)",
                  "locked counter (3 x 2)", "two locks (3 threads)"]


@pytest.mark.parametrize("name", CLASSIC_SPLITS)
def test_split_optimal_dpor_runs_one_execution_per_trace(backend, name):
    """The optimal search split into units (after every execution with no unit
    waiting in the pool, after 2 and 16 executions with the default lookahead)
    still runs exactly one execution per Mazurkiewicz trace (the brute-force
    counter's), none blocked, and reaches every final state."""
    from test_engine_optimal import CLASSICS
    from trace_counter import count_traces
    prog = CLASSICS[name]()
    traces, all_finals = count_traces(prog.setup, prog.threads, snapshot=prog.snapshot)
    for budget, ahead in ((1, 0), (2, LOOKAHEAD), (16, LOOKAHEAD)):
        out = explore_split(ProgramRef(f"{__name__}:classic_program", (name,)), backend,
                            "dpor", budget=budget, ahead=ahead)
        r = out.result
        assert r.violation is None and r.complete
        assert out.finals == all_finals
        assert r.sleep_blocked == 0
        assert r.executions == traces, (budget, r.executions, traces)
        assert out.units > 1


def test_late_units_keep_every_trace(backend):
    """lastzero(5) split after every execution, with units waiting in the pool:
    reversals fall into branches already handed out, and the late units that
    explore them keep the search at one execution per trace."""
    from test_engine_optimal import CLASSICS
    from trace_counter import count_traces
    prog = CLASSICS["lastzero(5)"]()
    traces, all_finals = count_traces(prog.setup, prog.threads, snapshot=prog.snapshot)
    out = explore_split(ProgramRef(f"{__name__}:classic_program", ("lastzero(5)",)), backend,
                        "dpor", budget=1, ahead=2)
    assert out.late > 0
    assert out.result.complete and out.finals == all_finals
    assert out.result.executions == traces


def test_split_runs_are_deterministic(backend):
    """Two split runs of one search hand out the same units and count the same."""
    program, nvars, nlocks = PROGRAMS["value choices"]
    ref = ProgramRef(f"{__name__}:engine_program", (program, nvars, nlocks))
    runs = [explore_split(ref, backend, "dpor", budget=3) for _ in range(3)]
    assert len({(o.units, o.result.executions, frozenset(o.finals)) for o in runs}) == 1


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(p=programs(("load", "store", "lock", "choose")))
def test_split_dpor_reaches_the_serial_final_states_on_random_programs(backend, p):
    """Random programs of loads, stores, locks and value choices, split after
    every execution with units waiting in the pool (the most reversals landing
    above a unit, the most late units): the split optimal search is complete
    and reaches exactly the final states of the serial one."""
    program, nvars, nlocks = p
    serial = outcomes(program, nvars, nlocks, "dpor")
    assume(serial.complete and not serial.kinds)  # the split stops at a deadlock
    out = explore_split(ProgramRef(f"{__name__}:engine_program", (program, nvars, nlocks)),
                        backend, "dpor", budget=1, ahead=2)
    assert out.result.violation is None and out.result.complete
    assert out.finals == serial.finals, program
