"""The soft-lockup watchdog: a loop without a visible operation is a livelock
finding at the looping code, not a hung checker."""

from __future__ import annotations

import signal

import pytest

from tdpmmu.engine import READ, WRITE, Var, explore, replay, visible
from tdpmmu.engine.watchdog import set_soft_lockup_threshold


@pytest.fixture
def quick_watchdog():
    old = set_soft_lockup_threshold(0.4)
    yield
    set_soft_lockup_threshold(old)


def _spin_without_a_step(s: Var) -> None:
    """Waits for a flag it reads without a scheduling point: nobody else can run."""
    visible("start", ((s, READ),))
    while not s.value:
        pass


def _set_flag(s: Var) -> None:
    visible("set", ((s, WRITE),))
    s.value = 1


@pytest.mark.parametrize("strategy", ["dfs", "dpor"])
def test_a_loop_that_never_reaches_a_visible_operation_is_a_soft_lockup(quick_watchdog,
                                                                       strategy):
    r = explore(lambda: Var(0), [_spin_without_a_step, _set_flag], strategy=strategy,
                max_executions=10)
    v = r.violation
    assert v is not None and v.kind == "livelock", v
    assert v.message.startswith("BUG: soft lockup - _spin_without_a_step stuck for 0.4s of CPU")
    assert v.function == "_spin_without_a_step"
    assert "test_engine_watchdog.py" in v.details[0], v.details
    again = replay(lambda: Var(0), [_spin_without_a_step, _set_flag], v.schedule)
    assert again.violation is not None and again.violation.kind == "livelock"


def test_the_watchdog_is_disarmed_after_the_search(quick_watchdog):
    def handler(*_a):  # pragma: no cover - must not be called
        raise AssertionError("the watchdog's timer outlived the search")

    old = signal.signal(signal.SIGVTALRM, handler)
    try:
        r = explore(lambda: Var(0), [_set_flag, _set_flag], strategy="dfs")
        assert r.violation is None and r.complete
        assert signal.getsignal(signal.SIGVTALRM) is handler
        assert signal.getitimer(signal.ITIMER_VIRTUAL) == (0.0, 0.0)
    finally:
        signal.signal(signal.SIGVTALRM, old)


def test_a_long_search_of_short_steps_is_no_lockup(quick_watchdog):
    """Only CPU spent within one step counts: many quick steps are fine."""
    def count(s: Var) -> None:
        for _ in range(2000):
            visible("inc", ((s, WRITE),))
            s.value += 1
            sum(range(2000))

    r = explore(lambda: Var(0), [count], strategy="dfs")
    assert r.violation is None and r.complete


def test_snapshot_children_are_watched_too(quick_watchdog):
    r = explore(lambda: Var(0), [_set_flag, _set_flag, _spin_without_a_step],
                strategy="dpor", snapshots=True)
    v = r.violation
    assert v is not None and v.kind == "livelock", v
