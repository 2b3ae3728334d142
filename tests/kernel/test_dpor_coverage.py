"""DPOR over the kernel primitives reaches every final state that DFS reaches.

Each primitive declares its accesses so that DPOR's reduction stays sound;
these small scenarios compare the sets of outcomes (and findings) of both
strategies.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest

from tdpmmu.engine import Var, current_thread, explore
from tdpmmu.kernel import (
    READ_ONCE,
    WRITE_ONCE,
    cmpxchg,
    cond_resched_lock,
    kfree,
    kmalloc,
    list_add_tail,
    list_add_tail_rcu,
    list_del_rcu,
    list_for_each_entry_rcu,
    list_head,
    rcu_read_lock,
    rcu_read_unlock,
    read_lock,
    read_trylock,
    read_unlock,
    refcount_dec_and_test,
    refcount_inc_not_zero,
    refcount_read,
    refcount_t,
    rwlock_t,
    spin_is_locked,
    spin_lock,
    spin_trylock,
    spin_unlock,
    spinlock_t,
    synchronize_rcu,
    write_lock,
    write_trylock,
    write_unlock,
)


class node:
    def __init__(self, n: int) -> None:
        self.n = n
        self.link = list_head(self)


def base() -> SimpleNamespace:
    head = list_head(None, "head")
    for n in (1, 2):
        list_add_tail(kmalloc(node, n).link, head)
    return SimpleNamespace(lock=spinlock_t("l"), rw=rwlock_t("rw"), x=Var(0, "x"),
                           count=refcount_t(1, "count"), head=head, logs={})


def log(s: SimpleNamespace, entry: object) -> None:
    """Per-thread logs: the order between threads' invisible appends is not an outcome."""
    s.logs.setdefault(current_thread().name, []).append(entry)


def t_trylock(s: SimpleNamespace) -> None:
    if spin_trylock(s.lock):
        log(s, "got")
        spin_unlock(s.lock)
    else:
        log(s, "busy")


def t_lock_incr(s: SimpleNamespace) -> None:
    spin_lock(s.lock)
    log(s, ("in", READ_ONCE(s.x)))
    cond_resched_lock(s.lock)
    WRITE_ONCE(s.x, READ_ONCE(s.x) + 1)
    spin_unlock(s.lock)


def t_is_locked(s: SimpleNamespace) -> None:
    log(s, ("locked", spin_is_locked(s.lock)))


def t_reader(s: SimpleNamespace) -> None:
    read_lock(s.rw)
    log(s, ("r", READ_ONCE(s.x)))
    read_unlock(s.rw)


def t_read_try(s: SimpleNamespace) -> None:
    if read_trylock(s.rw):
        log(s, "rt")
        read_unlock(s.rw)
    else:
        log(s, "rt-busy")


def t_writer(s: SimpleNamespace) -> None:
    write_lock(s.rw)
    WRITE_ONCE(s.x, 5)
    write_unlock(s.rw)


def t_write_try(s: SimpleNamespace) -> None:
    if write_trylock(s.rw):
        log(s, "wt")
        write_unlock(s.rw)
    else:
        log(s, "wt-busy")


def t_get(s: SimpleNamespace) -> None:
    if refcount_inc_not_zero(s.count):
        log(s, ("got", refcount_read(s.count)))
        if refcount_dec_and_test(s.count):
            log(s, "last")


def t_put(s: SimpleNamespace) -> None:
    if refcount_dec_and_test(s.count):
        log(s, "freed")


def t_cas(s: SimpleNamespace) -> None:
    log(s, ("cas", cmpxchg(s.x, 0, 1)))


def t_rcu_walk(s: SimpleNamespace) -> None:
    rcu_read_lock()
    log(s, tuple(e.n for e in list_for_each_entry_rcu(s.head)))
    rcu_read_unlock()


def t_rcu_del(s: SimpleNamespace) -> None:
    spin_lock(s.lock)
    first = s.head.next.owner
    list_del_rcu(first.link)
    spin_unlock(s.lock)
    synchronize_rcu()
    kfree(first)


def t_rcu_add(s: SimpleNamespace) -> None:
    spin_lock(s.lock)
    list_add_tail_rcu(node(3).link, s.head)
    spin_unlock(s.lock)


SCENARIOS: dict[str, list[Callable[[SimpleNamespace], None]]] = {
    "trylock-vs-lock": [t_trylock, t_lock_incr],
    "is_locked-vs-yielding-lock": [t_is_locked, t_lock_incr, t_lock_incr],
    "rwlock-trylocks": [t_read_try, t_write_try, t_reader],
    "rwlock-writer": [t_reader, t_writer, t_write_try],
    "refcount-get-put": [t_get, t_put, t_get],
    "cmpxchg": [t_cas, t_cas],
    "rcu-list": [t_rcu_walk, t_rcu_del, t_rcu_add],
}


def outcomes(strategy: str, threads: list) -> set:
    seen: set = set()

    def check(s: SimpleNamespace) -> None:
        seen.add((tuple(sorted((k, tuple(map(str, v))) for k, v in s.logs.items())),
                  READ_ONCE(s.x)))

    res = explore(base, threads, strategy=strategy, check=check, max_executions=20000)
    assert res.ok, res.violation and res.violation.message
    assert res.complete
    return seen


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_dpor_reaches_every_dfs_outcome(name: str) -> None:
    threads = SCENARIOS[name]
    dfs = outcomes("dfs", threads)
    dpor = outcomes("dpor", threads)
    assert dpor == dfs
    assert len(dfs) > 1
