"""Schedule tokens: compact for long executions, exact on replay, strict on bad input."""

from __future__ import annotations

import pytest

from tdpmmu.engine import ReplayMismatch, TokenError, Var, choose, explore, replay

LONG = 100_000


class Long:
    def __init__(self) -> None:
        self.x = Var(0, "x")
        self.y = Var(0, "y")
        self.picked = -1


def writer(s: Long) -> None:
    for i in range(LONG):
        s.x.store(i)


def meddler(s: Long) -> None:
    s.picked = choose(3)
    for _ in range(3):
        s.x.store(-1)
        s.y.store(s.y.load() + 1)


def final_state(s: Long) -> None:
    # Fails on every state, so the violation carries the whole execution's token.
    raise AssertionError(f"final x={s.x.load()} y={s.y.load()} picked={s.picked}")


@pytest.mark.parametrize("strategy", ["random", "dfs"])
def test_a_100000_step_execution_has_a_token_of_a_few_kb_and_replays(strategy):
    threads = [writer, meddler]
    r = explore(Long, threads, strategy=strategy, seed=7, max_executions=1,
                max_steps=2 * LONG, check=final_state, minimize=False)
    v = r.violation
    assert v is not None and v.kind == "assertion"
    assert v.steps >= LONG
    if strategy == "random":
        assert v.preemptions > 0  # the meddler's steps really are spread out
    assert len(v.schedule) <= 4096, len(v.schedule)
    again = replay(Long, threads, v.schedule, check=final_state)
    assert again.violation is not None
    assert again.violation.message == v.message
    assert again.violation.steps == v.steps


def test_many_context_switches_stay_compact():
    # A random schedule of 10,000 two-thread steps: the worst case for run lengths.
    def stores(s: Long) -> None:
        for i in range(5_000):
            s.y.store(i)

    r = explore(Long, [stores, stores], strategy="random", seed=1, max_executions=1,
                check=final_state, minimize=False)
    assert r.violation is not None and r.violation.steps == 10_000
    assert r.violation.preemptions > 1000
    assert len(r.violation.schedule) <= 4096, len(r.violation.schedule)
    again = replay(Long, [stores, stores], r.violation.schedule, check=final_state)
    assert [st.tid for st in again.violation.trace] == [st.tid for st in r.violation.trace]


class Racy:
    def __init__(self) -> None:
        self.c = Var(0, "c")


def inc(s: Racy) -> None:
    s.c.store(s.c.load() + 1)


def check_two(s: Racy) -> None:
    if s.c.load() != 2:
        raise AssertionError(f"c == {s.c.load()}")


@pytest.fixture(scope="module")
def racy_token() -> str:
    r = explore(Racy, [inc, inc], strategy="dfs", check=check_two)
    assert r.violation is not None
    return r.violation.schedule


@pytest.mark.parametrize("bad", [
    "",
    "garbage",
    "s1.",
    "s1.!!!!",
    "s2.eNpjYGZiYWAEAAAqAAs",
    "s1.eNpjYGZiYWAEAAAq",  # deflate stream cut short
])
def test_corrupt_tokens_raise_token_error(bad):
    with pytest.raises(TokenError):
        replay(Racy, [inc, inc], bad, check=check_two)


def test_truncated_token_raises_token_error(racy_token):
    with pytest.raises(TokenError):
        replay(Racy, [inc, inc], racy_token[:-3], check=check_two)


def test_token_from_another_program_raises_replay_mismatch(racy_token):
    def lone(s: Racy) -> None:
        s.c.store(1)

    def chooser(s: Racy) -> None:
        s.c.store(choose(2))

    with pytest.raises(ReplayMismatch):  # thread #1 does not exist
        replay(Racy, [lone], racy_token)
    with pytest.raises(ReplayMismatch):  # a value choice where a step was recorded
        replay(Racy, [chooser, chooser], racy_token)
    with pytest.raises(ReplayMismatch):  # the program ends before the schedule does
        replay(Racy, [lone, lone], racy_token)
    with pytest.raises(ReplayMismatch):  # the program wants more than the schedule has
        replay(Racy, [inc, inc, inc], racy_token)
