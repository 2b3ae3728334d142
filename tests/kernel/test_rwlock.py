"""rwlock_t read side: readers share the lock, a writer excludes them, DPOR against DFS."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest

from tdpmmu.engine import Var, current_thread, explore
from tdpmmu.kernel import (
    READ_ONCE,
    WRITE_ONCE,
    cond_resched_rwlock_read,
    read_lock,
    read_unlock,
    rwlock_t,
    write_lock,
    write_unlock,
)


def setup() -> SimpleNamespace:
    return SimpleNamespace(mmu_lock=rwlock_t("kvm->mmu_lock"),
                           inside={"reader": Var(0, "in0"), "reader#1": Var(0, "in1")},
                           writing=Var(0, "writing"), logs={})


def log(s: SimpleNamespace, entry: object) -> None:
    s.logs.setdefault(current_thread().name, []).append(entry)


def reader(s: SimpleNamespace) -> None:
    me = current_thread().name
    other = "reader#1" if me == "reader" else "reader"
    read_lock(s.mmu_lock)
    WRITE_ONCE(s.inside[me], 1)
    log(s, ("others inside", READ_ONCE(s.inside[other]), "writer inside",
            READ_ONCE(s.writing)))
    WRITE_ONCE(s.inside[me], 0)
    read_unlock(s.mmu_lock)


def yielding_reader(s: SimpleNamespace) -> None:
    read_lock(s.mmu_lock)
    log(s, ("before", READ_ONCE(s.writing)))
    cond_resched_rwlock_read(s.mmu_lock)  # a writer may get in here
    log(s, ("after", READ_ONCE(s.writing)))
    read_unlock(s.mmu_lock)


def writer(s: SimpleNamespace) -> None:
    write_lock(s.mmu_lock)
    WRITE_ONCE(s.writing, 1)
    log(s, ("readers inside", sum(READ_ONCE(v) for v in s.inside.values())))
    WRITE_ONCE(s.writing, 2)
    write_unlock(s.mmu_lock)


def outcomes(threads: list, strategy: str) -> set:
    seen: set = set()

    def check(s: SimpleNamespace) -> None:
        seen.add(tuple(sorted((k, tuple(map(str, v))) for k, v in s.logs.items())))

    res = explore(setup, threads, strategy=strategy, check=check, max_executions=20000)
    assert res.ok, res.violation and res.violation.message
    assert res.complete
    return seen


def test_two_readers_hold_the_lock_at_once() -> None:
    seen = outcomes([reader, reader], "dpor")
    firsts = {dict(k)[name][0] for k in seen for name in ("reader", "reader#1")}
    # One reader saw the other inside its read-side section.
    assert str(("others inside", 1, "writer inside", 0)) in firsts


def test_a_writer_excludes_readers_both_ways() -> None:
    seen = outcomes([reader, reader, writer], "dpor")
    for k in seen:
        logs = dict(k)
        assert logs["writer"] == (str(("readers inside", 0)),)
        for name in ("reader", "reader#1"):
            # never inside while the writer is (it is 0 before, 2 after)
            assert "writer inside', 1" not in logs[name][0]
    assert len(seen) > 2


def test_a_writer_gets_in_while_a_reader_yields() -> None:
    seen = outcomes([yielding_reader, writer], "dpor")
    pairs = {dict(k)["yielding_reader"] for k in seen}
    assert (str(("before", 0)), str(("after", 2))) in pairs
    assert (str(("before", 0)), str(("after", 0))) in pairs


PROGRAMS: dict[str, list[Callable[[SimpleNamespace], None]]] = {
    "two-readers": [reader, reader],
    "two-readers-one-writer": [reader, reader, writer],
    "yielding-reader-writer": [yielding_reader, writer, reader],
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_dpor_reaches_every_dfs_outcome_with_read_locks(name: str) -> None:
    dfs = outcomes(PROGRAMS[name], "dfs")
    dpor = outcomes(PROGRAMS[name], "dpor")
    assert dpor == dfs
    assert len(dfs) > 1
