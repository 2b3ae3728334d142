"""RCU list walks under rcu_read_lock racing list_del_rcu + call_rcu, and their misuse."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest

from tdpmmu.engine import Finding, Var, current_thread, explore
from tdpmmu.kernel import (
    LIST_HEAD,
    READ_ONCE,
    call_rcu,
    kfree,
    kmalloc,
    kmemleak_check,
    kmemleak_not_leak,
    list_add_rcu,
    list_add_tail,
    list_del_rcu,
    list_first_or_null_rcu,
    list_head,
    list_next_or_null_rcu,
    rcu_barrier,
    rcu_head,
    rcu_read_lock,
    rcu_read_unlock,
    spin_lock,
    spin_unlock,
    spinlock_t,
)


class root:
    def __init__(self, n: int) -> None:
        self.n = Var(n, f"root{n}.n")
        self.link = list_head(self)
        self.rcu = rcu_head(self)


def setup() -> SimpleNamespace:
    head = LIST_HEAD("tdp_mmu_roots")
    for n in (1, 2):
        list_add_tail(kmalloc(root, n).link, head)
    return SimpleNamespace(roots=head, lock=spinlock_t("tdp_mmu_pages_lock"), logs={})


def log(s: SimpleNamespace, entry: object) -> None:
    s.logs.setdefault(current_thread().name, []).append(entry)


def free_root_rcu(head: rcu_head) -> None:
    kfree(head.owner)


def walk(s: SimpleNamespace) -> None:
    """tdp_mmu_next_root's walk: first, then next from the previous node."""
    rcu_read_lock()
    seen = []
    r = list_first_or_null_rcu(s.roots)
    while r is not None:
        seen.append(READ_ONCE(r.n))
        r = list_next_or_null_rcu(s.roots, r.link)
    rcu_read_unlock()
    log(s, tuple(seen))


def del_first(s: SimpleNamespace) -> None:
    spin_lock(s.lock)
    victim = list_first_or_null_rcu(s.roots)
    list_del_rcu(victim.link)
    spin_unlock(s.lock)
    call_rcu(victim.rcu, free_root_rcu)
    rcu_barrier()  # let the callback run within the execution


def del_second(s: SimpleNamespace) -> None:
    spin_lock(s.lock)
    first = list_first_or_null_rcu(s.roots)
    victim = list_next_or_null_rcu(s.roots, first.link)
    list_del_rcu(victim.link)
    spin_unlock(s.lock)
    call_rcu(victim.rcu, free_root_rcu)
    rcu_barrier()


def add_front(s: SimpleNamespace) -> None:
    spin_lock(s.lock)
    list_add_rcu(kmalloc(root, 0).link, s.roots)
    spin_unlock(s.lock)


def keeps_pointer(s: SimpleNamespace) -> None:
    """Takes a node under rcu_read_lock and uses it after rcu_read_unlock: a bug."""
    rcu_read_lock()
    r = list_first_or_null_rcu(s.roots)
    rcu_read_unlock()
    try:
        log(s, READ_ONCE(r.n))
    except Finding as f:
        log(s, f.message)


def outcomes(threads: list, strategy: str) -> set:
    seen: set = set()

    def check(s: SimpleNamespace) -> None:
        rcu_barrier()
        seen.add(tuple(sorted((k, tuple(map(str, v))) for k, v in s.logs.items())))

    res = explore(setup, threads, strategy=strategy, check=check, max_executions=20000)
    assert res.ok, res.violation and (res.violation.message, res.violation.details)
    assert res.complete
    return seen


def test_walker_never_sees_freed_memory_when_frees_wait_for_a_grace_period() -> None:
    walked: set = set()

    def check(s: SimpleNamespace) -> None:
        rcu_barrier()
        r = list_first_or_null_rcu(s.roots)
        while r is not None:  # the survivors are still on the list: no leak
            kmemleak_not_leak(r)
            r = list_next_or_null_rcu(s.roots, r.link)
        kmemleak_check()  # and the removed root was freed by its callback
        walked.add(s.logs["walk"][0])

    res = explore(setup, [walk, del_first], strategy="dpor", check=check)
    assert res.ok and res.complete
    # The walk ran before the deletion, after it, or across it (a reader on
    # the removed node still reaches its successor).
    assert walked == {(1, 2), (2,)}


def test_walker_sitting_on_a_removed_node_continues_to_its_successor() -> None:
    seen = outcomes([walk, del_second], "dpor")
    assert {dict(k)["walk"] for k in seen} == {("(1, 2)",), ("(1,)",)}


def test_a_pointer_kept_past_rcu_read_unlock_is_use_after_free() -> None:
    res = explore(setup, [lambda s: (rcu_read_lock(), _use_after_unlock(s)), del_first],
                  strategy="dpor")
    v = res.violation
    assert v is not None and v.kind == "KASAN"
    assert v.message == "BUG: KASAN: use-after-free in _use_after_unlock"
    assert "Freed by task del_first:" in v.details
    assert any("free_root_rcu" in line for line in v.details)


def _use_after_unlock(s: SimpleNamespace) -> None:
    r = list_first_or_null_rcu(s.roots)
    rcu_read_unlock()
    READ_ONCE(r.n)


def test_the_same_use_inside_the_section_is_safe() -> None:
    def uses_inside(s: SimpleNamespace) -> None:
        rcu_read_lock()
        r = list_first_or_null_rcu(s.roots)
        READ_ONCE(r.n)
        rcu_read_unlock()

    res = explore(setup, [uses_inside, del_first], strategy="dpor")
    assert res.ok and res.complete


def peek_first(s: SimpleNamespace) -> None:
    """Reads the first root's number in a read-side section."""
    rcu_read_lock()
    r = list_first_or_null_rcu(s.roots)
    log(s, READ_ONCE(r.n))
    rcu_read_unlock()


def peek_twice(s: SimpleNamespace) -> None:
    """Two sections: the second begins while a grace period may be waiting
    for the first."""
    peek_first(s)
    peek_first(s)


PROGRAMS: dict[str, list[Callable[[SimpleNamespace], None]]] = {
    "walk-vs-del-first": [walk, del_first],
    "walk-vs-del-second": [walk, del_second],
    "walk-vs-add": [walk, add_front],
    "kept-pointer-vs-del": [keeps_pointer, del_first],
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_dpor_reaches_every_dfs_outcome_with_rcu_lists(name: str) -> None:
    dfs = outcomes(PROGRAMS[name], "dfs")
    dpor = outcomes(PROGRAMS[name], "dpor")
    assert dpor == dfs
    assert len(dfs) > 1


def test_kept_pointer_outcomes_include_the_use_after_free() -> None:
    seen = outcomes(PROGRAMS["kept-pointer-vs-del"], "dpor")
    read = {dict(k)["keeps_pointer"][0] for k in seen}
    assert "1" in read and "BUG: KASAN: use-after-free in keeps_pointer" in read


SECTIONS = {
    "two-sections-vs-del-first": [peek_twice, del_first],
    "section-then-kept-pointer-vs-del": [lambda s: (peek_first(s), keeps_pointer(s)), del_first],
}


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_a_grace_periods_wait_and_the_readers_next_section_are_independent(name: str) -> None:
    """The wait for a reader reads only its word of completed sections, so
    entering the next section does not race with it (``rcu``'s module doc):
    the outcomes of DFS, with fewer executions than with the wait reading the
    whole reader (``set_reader_words(False)``), which reaches them too."""
    from tdpmmu.kernel.rcu import set_reader_words

    def run(strategy: str) -> tuple[set, int]:
        seen: set = set()

        def check(s: SimpleNamespace) -> None:
            rcu_barrier()
            seen.add(tuple(sorted((k, tuple(map(str, v))) for k, v in s.logs.items())))

        res = explore(setup, SECTIONS[name], strategy=strategy, check=check,
                      max_executions=20000, minimize=False)
        assert res.complete
        return seen, res.executions

    dfs, _ = run("dfs")
    fine, n_fine = run("dpor")
    old = set_reader_words(False)
    try:
        coarse, n_coarse = run("dpor")
    finally:
        set_reader_words(old)
    assert fine == coarse == dfs
    assert n_fine < n_coarse
