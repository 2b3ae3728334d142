"""Counters, locks and independence: what each strategy finds and how much it explores."""

from __future__ import annotations

import itertools

import pytest
from engine_models import TLock, lock, unlock

from tdpmmu.engine import Var, explore, replay


class Counter:
    def __init__(self) -> None:
        self.count = Var(0, "count")
        self.lock = TLock("L")
        self.sections: list[tuple[str, int]] = []  # critical sections, in the order they ran


def racy_inc(s: Counter) -> None:
    for _ in range(2):
        v = s.count.load()
        s.count.store(v + 1)


def check_four(s: Counter) -> None:
    # An explicit raise: pytest's assert rewriting would put object addresses in the message.
    if s.count.load() != 4:
        raise AssertionError(f"lost update: count == {s.count.load()}")


RACY_ARGS = {
    "dfs": {},
    "dpor": {},
    "bounded": {"preemption_bound": 1},
    "pct": {"max_executions": 200},
    "random": {"max_executions": 200},
}


@pytest.mark.parametrize("strategy", list(RACY_ARGS))
def test_racy_counter_lost_update_found_and_replayed(strategy):
    threads = [("A", racy_inc), ("B", racy_inc)]
    r = explore(Counter, threads, strategy=strategy, check=check_four, **RACY_ARGS[strategy])
    v = r.violation
    assert v is not None, f"{strategy} missed the lost update"
    assert (v.kind, v.function) == ("assertion", "check")
    assert v.message.startswith("lost update: count == ")
    assert not r.complete
    again = replay(Counter, threads, v.schedule, check=check_four)
    assert again.violation is not None
    assert (again.violation.kind, again.violation.message) == (v.kind, v.message)
    assert [(st.thread, st.label) for st in again.violation.trace] == \
        [(st.thread, st.label) for st in v.trace]


def locked_inc(name: str):
    def inc(s: Counter) -> None:
        for k in range(2):
            lock(s.lock)
            s.sections.append((name, k))
            v = s.count.load()
            s.count.store(v + 1)
            unlock(s.lock)
    return inc


LOCKED = [("A", locked_inc("A")), ("B", locked_inc("B"))]


def test_locked_counter_verified_by_dfs_and_dpor():
    dfs = explore(Counter, LOCKED, strategy="dfs", check=check_four)
    dpor = explore(Counter, LOCKED, strategy="dpor", check=check_four)
    for r in (dfs, dpor):
        assert r.violation is None
        assert r.complete and r.cut_by is None
    assert dpor.executions <= dfs.executions
    assert dpor.executions == 6  # one per order of the critical sections


def test_locked_counter_with_kernel_spinlock():
    kernel = pytest.importorskip("tdpmmu.kernel")
    if not hasattr(kernel, "spin_lock"):
        pytest.skip("tdpmmu.kernel has no spin_lock yet")

    class KCounter:
        def __init__(self) -> None:
            self.count = Var(0, "count")
            self.lock = kernel.spinlock_t("counter_lock")

    def inc(s: KCounter) -> None:
        for _ in range(2):
            kernel.spin_lock(s.lock)
            v = s.count.load()
            s.count.store(v + 1)
            kernel.spin_unlock(s.lock)

    dfs = explore(KCounter, [inc, inc], strategy="dfs", check=check_four)
    dpor = explore(KCounter, [inc, inc], strategy="dpor", check=check_four)
    for r in (dfs, dpor):
        assert r.violation is None and r.complete
    assert dpor.executions <= dfs.executions


ALL_ORDERS = {tuple(o) for o in itertools.permutations(
    [("A", 0), ("A", 1), ("B", 0), ("B", 1)]) if o.index(("A", 0)) < o.index(("A", 1))
    and o.index(("B", 0)) < o.index(("B", 1))}


@pytest.mark.parametrize("strategy", ["dfs", "dpor"])
def test_every_order_of_the_critical_sections_is_reached(strategy):
    orders = set()

    def check(s: Counter) -> None:
        check_four(s)
        orders.add(tuple(s.sections))

    r = explore(Counter, LOCKED, strategy=strategy, check=check)
    assert r.violation is None and r.complete
    assert len(ALL_ORDERS) == 6
    assert orders == ALL_ORDERS


class Disjoint:
    def __init__(self) -> None:
        self.x = Var(0, "x")
        self.y = Var(0, "y")


def on_x(s: Disjoint) -> None:
    for i in range(3):
        s.x.store(s.x.load() + i)


def on_y(s: Disjoint) -> None:
    for i in range(3):
        s.y.store(s.y.load() + i)


def test_disjoint_threads_take_one_dpor_execution():
    dpor = explore(Disjoint, [on_x, on_y], strategy="dpor")
    dfs = explore(Disjoint, [on_x, on_y], strategy="dfs")
    assert dpor.complete and dpor.violation is None
    assert dpor.executions == 1
    assert dfs.complete and dfs.executions == 924  # C(12, 6) interleavings


def test_disjoint_threads_with_a_shared_read_only_var_take_one_execution():
    class S:
        def __init__(self) -> None:
            self.config = Var(1, "config")
            self.out = [Var(0, f"out{i}") for i in range(3)]

    def reader(i: int):
        return lambda s: s.out[i].store(s.config.load())

    threads = [reader(i) for i in range(3)]
    assert explore(S, threads, strategy="dpor").executions == 1
    assert explore(S, threads, strategy="dfs").executions == 90  # 6! / 2^3
