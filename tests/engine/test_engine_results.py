"""What a Result claims: completeness, the bound that cut a search, determinism."""

from __future__ import annotations

import pytest
from engine_models import TLock, lock, unlock

from tdpmmu.engine import Var, explore


class S:
    def __init__(self) -> None:
        self.c = Var(0, "c")
        self.lock = TLock("L")


def racy(s: S) -> None:
    for _ in range(2):
        s.c.store(s.c.load() + 1)


def locked(s: S) -> None:
    for _ in range(2):
        lock(s.lock)
        s.c.store(s.c.load() + 1)
        unlock(s.lock)


def check_count(n: int):
    def check(s: S) -> None:
        if s.c.load() != n:
            raise AssertionError(f"c == {s.c.load()}, expected {n}")
    return check


THREE_LOCKED = [locked, locked, locked]


@pytest.mark.parametrize("strategy", ["dfs", "dpor"])
def test_max_executions_cut_is_not_complete(strategy):
    full = explore(S, THREE_LOCKED, strategy=strategy)
    assert full.complete and full.cut_by is None and full.executions > 10
    cut = explore(S, THREE_LOCKED, strategy=strategy, max_executions=10)
    assert cut.executions == 10
    assert not cut.complete and cut.cut_by == "max_executions"
    assert cut.violation is None


def test_max_executions_that_happens_to_cover_the_space():
    full = explore(S, THREE_LOCKED, strategy="dpor")
    # Exactly enough executions: the search stops on the bound before it can
    # tell that nothing is left, so it says the bound cut it (conservative).
    r = explore(S, THREE_LOCKED, strategy="dpor", max_executions=full.executions)
    assert r.executions == full.executions
    assert not r.complete and r.cut_by == "max_executions"


def test_bounded_search_cut_by_the_preemption_bound():
    r = explore(S, THREE_LOCKED, strategy="bounded", preemption_bound=1)
    assert r.violation is None
    assert not r.complete and r.cut_by == "preemption_bound"
    big = explore(S, [locked, locked], strategy="bounded", preemption_bound=20)
    assert big.complete and big.cut_by is None
    assert big.executions == explore(S, [locked, locked], strategy="dfs").executions


def test_single_thread_bounded_search_is_complete():
    r = explore(S, [locked], strategy="bounded", preemption_bound=0)
    assert r.complete and r.executions == 1


@pytest.mark.parametrize("strategy", ["pct", "random"])
def test_sampling_strategies_are_never_complete(strategy):
    r = explore(S, [locked, locked], strategy=strategy, max_executions=30)
    assert r.violation is None and r.executions == 30
    assert not r.complete


@pytest.mark.parametrize("strategy", ["pct", "random", "dfs", "dpor", "bounded"])
def test_same_seed_same_result(strategy):
    threads = [racy, racy, locked]

    def run(seed: int):
        r = explore(S, threads, strategy=strategy, seed=seed, max_executions=300,
                    check=check_count(6))
        v = r.violation
        return r.executions, r.complete, v and (v.kind, v.message, v.schedule,
                                               [(st.thread, st.label) for st in v.trace])

    first = run(3)
    assert first[2] is not None
    assert run(3) == first


@pytest.mark.parametrize("strategy", ["pct", "random"])
def test_different_seeds_sample_differently(strategy):
    def schedules(seed: int) -> str:
        r = explore(S, [racy, racy, racy], strategy=strategy, seed=seed, max_executions=50,
                    check=check_count(6), minimize=False)
        return r.violation.schedule if r.violation else ""

    assert len({schedules(seed) for seed in range(6)}) > 1


def test_same_seed_same_counts_for_a_passing_search():
    a = explore(S, [locked, locked], strategy="random", seed=11, max_executions=40)
    b = explore(S, [locked, locked], strategy="random", seed=11, max_executions=40)
    assert (a.executions, a.max_depth, a.complete) == (b.executions, b.max_depth, b.complete)
