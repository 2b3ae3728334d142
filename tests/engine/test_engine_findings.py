"""Deadlocks, the step bound, spin loops and model exceptions are findings, not hangs or crashes."""

from __future__ import annotations

import pytest
from engine_models import TLock, lock, unlock

from tdpmmu.engine import Var, cpu_relax, explore, replay, visible

STRATEGIES = ["dfs", "dpor", "bounded", "pct", "random"]


class Two:
    def __init__(self) -> None:
        self.a = TLock("A")
        self.b = TLock("B")


def take_ab(s: Two) -> None:
    lock(s.a)
    lock(s.b)
    unlock(s.b)
    unlock(s.a)


def take_ba(s: Two) -> None:
    lock(s.b)
    lock(s.a)
    unlock(s.a)
    unlock(s.b)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_abba_deadlock_is_found_with_where_and_what(strategy):
    r = explore(Two, [take_ab, take_ba], strategy=strategy, max_executions=500)
    v = r.violation
    assert v is not None and v.kind == "deadlock"
    assert "take_ab" in v.message and "take_ba" in v.message
    lines = {line.split(":")[0].strip(): line for line in v.details}
    # Each thread: its model call stack (thread function, then the lock helper)
    # and the lock it waits for.
    assert "in take_ab -> lock" in lines["take_ab"]
    assert "waiting for lock B" in lines["take_ab"]
    assert "in take_ba -> lock" in lines["take_ba"]
    assert "waiting for lock A" in lines["take_ba"]
    again = replay(Two, [take_ab, take_ba], v.schedule)
    assert again.violation is not None and again.violation.details == v.details


def test_no_deadlock_when_both_take_a_then_b():
    for strategy in ("dfs", "dpor"):
        r = explore(Two, [take_ab, take_ab], strategy=strategy)
        assert r.violation is None and r.complete


def spin_forever(s: object) -> None:
    while True:
        visible("spin")


@pytest.mark.parametrize("strategy", ["dfs", "dpor", "random"])
def test_endless_visible_loop_hits_the_step_bound(strategy):
    r = explore(lambda: None, [spin_forever], strategy=strategy, max_steps=500,
                max_executions=3)
    v = r.violation
    assert v is not None and v.kind == "livelock"
    assert "500" in v.message
    assert any("spin_forever" in line for line in v.details)
    assert not r.complete


def test_livelock_token_replays_as_livelock_with_the_default_step_bound():
    r = explore(lambda: None, [spin_forever], strategy="dfs", max_steps=500)
    assert r.violation is not None and r.violation.kind == "livelock"
    again = replay(lambda: None, [spin_forever], r.violation.schedule)
    assert again.violation is not None and again.violation.kind == "livelock"
    assert again.violation.steps == 500


class Flag:
    def __init__(self) -> None:
        self.flag = Var(0, "flag")
        self.other = Var(0, "other")
        self.seen = None


def wait_for_flag(s: Flag) -> None:
    while s.flag.load() == 0:
        cpu_relax()
    s.seen = s.flag.load()


def busy_elsewhere(s: Flag) -> None:
    for i in range(3):
        s.other.store(i)


@pytest.mark.parametrize("strategy", ["dfs", "dpor"])
def test_spin_on_a_var_nobody_writes_is_a_deadlock_not_an_endless_branch(strategy):
    r = explore(Flag, [wait_for_flag, busy_elsewhere], strategy=strategy)
    v = r.violation
    assert v is not None and v.kind == "deadlock"
    line = next(line for line in v.details if "wait_for_flag" in line)
    assert "cpu_relax" in line and "waiting for a write to flag" in line
    assert r.executions <= 10


def set_flag(s: Flag) -> None:
    s.other.store(1)
    s.flag.store(1)


@pytest.mark.parametrize("strategy", ["dfs", "dpor"])
def test_spin_on_a_flag_another_thread_sets_completes(strategy):
    seen = set()

    def check(s: Flag) -> None:
        seen.add(s.seen)

    r = explore(Flag, [wait_for_flag, set_flag, busy_elsewhere], strategy=strategy,
                check=check)
    assert r.violation is None and r.complete
    assert seen == {1}


def test_blocking_wait_on_a_var_is_enabled_by_the_write():
    def waiter(s: Flag) -> None:
        visible("wait flag", ((s.flag, 0),), enabled=lambda: s.flag.value == 1,
                waits_for="flag == 1")
        s.seen = s.flag.value

    for strategy in ("dfs", "dpor"):
        r = explore(Flag, [waiter, set_flag], strategy=strategy)
        assert r.violation is None and r.complete
        r = explore(Flag, [waiter, busy_elsewhere], strategy=strategy)
        assert r.violation is not None and r.violation.kind == "deadlock"
        assert any("waiting for flag == 1" in line for line in r.violation.details)


def crashes(s: Flag) -> None:
    s.flag.store(1)
    table = {}
    s.other.store(table["missing"])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_python_exception_in_a_model_thread_is_a_finding(strategy):
    r = explore(Flag, [busy_elsewhere, crashes], strategy=strategy, max_executions=50)
    v = r.violation
    assert v is not None and v.kind == "exception"
    assert v.message == "KeyError: 'missing'"
    assert v.thread == "crashes" and v.function == "crashes"
    text = "\n".join(v.details)
    assert "Traceback (most recent call last)" in text
    assert 'table["missing"]' in text and "KeyError" in text
    again = replay(Flag, [busy_elsewhere, crashes], v.schedule)
    assert again.violation is not None and again.violation.message == v.message


def test_python_exception_in_check_is_a_finding_too():
    def check(s: Flag) -> None:
        if s.other.load() == 2:
            s.missing_attribute.load()

    r = explore(Flag, [busy_elsewhere], check=check)
    v = r.violation
    assert v is not None and (v.kind, v.function) == ("exception", "check")
    assert v.message.startswith("AttributeError: ")
    assert any("missing_attribute" in line for line in v.details)
