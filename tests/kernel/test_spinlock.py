"""spinlock_t: mutual exclusion, deadlocks, debug-spinlock reports, cond_resched_lock."""

from __future__ import annotations

from types import SimpleNamespace

from tdpmmu.engine import Var, explore
from tdpmmu.kernel import (
    cond_resched_lock,
    set_debug_locks,
    spin_is_locked,
    spin_lock,
    spin_trylock,
    spin_unlock,
    spinlock_t,
)


def two_locks() -> SimpleNamespace:
    return SimpleNamespace(a=spinlock_t("lock_a"), b=spinlock_t("lock_b"), log=[])


def take_ab(s: SimpleNamespace) -> None:
    spin_lock(s.a)
    spin_lock(s.b)
    spin_unlock(s.b)
    spin_unlock(s.a)


def take_ba(s: SimpleNamespace) -> None:
    spin_lock(s.b)
    spin_lock(s.a)
    spin_unlock(s.a)
    spin_unlock(s.b)


def test_abba_deadlock_found_by_dpor() -> None:
    old = set_debug_locks(False)  # else lockdep reports the inversion before the hang
    try:
        res = explore(two_locks, [take_ab, take_ba], strategy="dpor")
    finally:
        set_debug_locks(old)
    assert res.violation is not None
    assert res.violation.kind == "deadlock"
    assert "take_ab" in res.violation.message and "take_ba" in res.violation.message
    assert any("waiting for lock_b" in d for d in res.violation.details)
    assert any("waiting for lock_a" in d for d in res.violation.details)


def test_same_order_no_deadlock_under_dpor() -> None:
    res = explore(two_locks, [take_ab, take_ab], strategy="dpor")
    assert res.ok and res.complete
    assert res.executions >= 2  # both orders of the first acquire


def test_lockdep_reports_inversion_without_deadlock() -> None:
    # dfs's first execution runs take_ab to completion, then take_ba: no deadlock
    # happens, but lockdep sees a -> b and then b -> a.
    res = explore(two_locks, [take_ab, take_ba], strategy="dfs", max_executions=1)
    v = res.violation
    assert v is not None
    assert v.kind == "lockdep"
    assert v.message == "WARNING: possible circular locking dependency detected"
    assert v.function == "take_ba"
    assert v.thread == "take_ba"
    assert any("acquired by take_ab while holding (lock_a)" in d for d in v.details)
    assert any(d.strip() == "take_ab" for d in v.details)  # the chain of the old edge


def test_lock_gives_mutual_exclusion() -> None:
    def setup() -> SimpleNamespace:
        return SimpleNamespace(lock=spinlock_t("l"), x=Var(0, "x"))

    def inc(s: SimpleNamespace) -> None:
        spin_lock(s.lock)
        v = s.x.load()
        s.x.store(v + 1)
        spin_unlock(s.lock)

    def check(s: SimpleNamespace) -> None:
        assert s.x.value == 2

    assert explore(setup, [inc, inc], strategy="dpor", check=check).ok
    # without the lock the lost update is found
    def racy(s: SimpleNamespace) -> None:
        v = s.x.load()
        s.x.store(v + 1)

    res = explore(setup, [racy, racy], strategy="dpor", check=check)
    assert res.violation is not None and res.violation.kind == "assertion"


def test_recursive_spin_lock_is_reported() -> None:
    def setup() -> SimpleNamespace:
        return SimpleNamespace(lock=spinlock_t("mmu_lock"))

    def twice(s: SimpleNamespace) -> None:
        spin_lock(s.lock)
        spin_lock(s.lock)

    v = explore(setup, [twice]).violation
    assert v is not None and v.kind == "BUG"
    assert v.message == "BUG: spinlock recursion on CPU#0, twice"
    assert v.function == "twice"


def test_spin_unlock_by_non_owner_is_reported() -> None:
    def setup() -> SimpleNamespace:
        return SimpleNamespace(lock=spinlock_t("mmu_lock"), go=Var(0, "go"))

    def owner(s: SimpleNamespace) -> None:
        spin_lock(s.lock)
        s.go.store(1)

    def thief(s: SimpleNamespace) -> None:
        if s.go.load():
            spin_unlock(s.lock)

    res = explore(setup, [owner, thief], strategy="dpor")
    v = res.violation
    assert v is not None and v.kind == "BUG"
    assert v.message == "BUG: spinlock wrong owner on CPU#1, thief"
    assert any(".owner: owner" in d for d in v.details)


def test_spin_unlock_of_free_lock_is_reported() -> None:
    def setup() -> SimpleNamespace:
        return SimpleNamespace(lock=spinlock_t("mmu_lock"))

    def unlock(s: SimpleNamespace) -> None:
        spin_unlock(s.lock)

    v = explore(setup, [unlock]).violation
    assert v is not None and v.message == "BUG: spinlock already unlocked on CPU#0, unlock"


def test_cond_resched_lock_lets_another_thread_in() -> None:
    def setup() -> SimpleNamespace:
        return SimpleNamespace(lock=spinlock_t("mmu_lock"), x=0, seen=None)

    def yielder(s: SimpleNamespace) -> None:
        spin_lock(s.lock)
        before = s.x
        assert cond_resched_lock(s.lock) == 1
        s.seen = (before, s.x)
        spin_unlock(s.lock)

    def writer(s: SimpleNamespace) -> None:
        spin_lock(s.lock)
        s.x += 1
        spin_unlock(s.lock)

    outcomes: set[tuple[int, int]] = set()

    def check(s: SimpleNamespace) -> None:
        outcomes.add(s.seen)

    res = explore(setup, [yielder, writer], strategy="dpor", check=check)
    assert res.ok and res.complete
    # (0, 1): the writer ran inside the yield; (0, 0) before it; (1, 1) after.
    assert outcomes == {(0, 0), (0, 1), (1, 1)}


def test_cond_resched_lock_without_the_lock_warns() -> None:
    def setup() -> SimpleNamespace:
        return SimpleNamespace(lock=spinlock_t("mmu_lock"))

    def bad(s: SimpleNamespace) -> None:
        cond_resched_lock(s.lock)

    v = explore(setup, [bad]).violation
    assert v is not None and v.kind == "WARN" and v.function == "bad"


def test_trylock_sees_both_outcomes_under_dpor() -> None:
    def setup() -> SimpleNamespace:
        return SimpleNamespace(lock=spinlock_t("l"), got=None)

    def holder(s: SimpleNamespace) -> None:
        spin_lock(s.lock)
        spin_unlock(s.lock)

    def trier(s: SimpleNamespace) -> None:
        s.got = spin_trylock(s.lock)
        if s.got:
            spin_unlock(s.lock)

    outcomes: set[int] = set()
    res = explore(setup, [holder, trier], strategy="dpor",
                  check=lambda s: outcomes.add(s.got))
    assert res.ok and res.complete
    assert outcomes == {0, 1}


def test_trylock_fails_only_between_lock_and_unlock() -> None:
    # The failing outcome needs the trylock to run between the holder's lock and
    # unlock: DPOR must try the trylock before the release as well as after.
    def setup() -> SimpleNamespace:
        return SimpleNamespace(lock=spinlock_t("l"), got=[], locked=[])

    def holder(s: SimpleNamespace) -> None:
        spin_lock(s.lock)
        spin_unlock(s.lock)

    def trier(s: SimpleNamespace) -> None:
        s.locked.append(spin_is_locked(s.lock))

    outcomes: set[bool] = set()
    res = explore(setup, [trier, holder], strategy="dpor",
                  check=lambda s: outcomes.add(s.locked[0]))
    assert res.ok and res.complete
    assert outcomes == {False, True}


def test_spinlock_works_in_setup() -> None:
    lock = spinlock_t("setup_lock")
    spin_lock(lock)
    assert lock.owner is not None
    assert spin_trylock(lock) == 0
    spin_unlock(lock)
    assert lock.owner is None


def _check_at_unlock(declare: bool, kind: str) -> tuple[int, bool]:
    """A property checked at unlock reads ``flag``, which another thread stores
    without the lock: DPOR explores the store on both sides of the unlock only
    if the check's read is declared in the release's step (release_reads)."""
    from tdpmmu.engine import READ, Finding
    from tdpmmu.kernel import read_lock, read_unlock, rwlock_t, write_lock, write_unlock

    def setup() -> SimpleNamespace:
        lock = spinlock_t("mmu_lock") if kind == "spin" else rwlock_t("mmu_lock")
        s = SimpleNamespace(lock=lock, flag=Var(0, "flag"))

        def on_release(t: object) -> None:
            if s.flag.value:
                raise Finding("property", "flag set when the lock was dropped")
        lock.on_release = on_release
        if declare:
            lock.release_reads = lambda t: ((s.flag, READ),)
        return s

    take, drop = {"spin": (spin_lock, spin_unlock), "write": (write_lock, write_unlock),
                  "read": (read_lock, read_unlock)}[kind]

    def holder(s: SimpleNamespace) -> None:
        take(s.lock)
        drop(s.lock)

    def writer(s: SimpleNamespace) -> None:
        s.flag.store(1)

    res = explore(setup, [holder, writer])
    return res.executions, res.violation is not None


def test_release_reads_orders_a_check_at_unlock_against_unlocked_stores() -> None:
    for kind in ("spin", "write", "read"):
        assert _check_at_unlock(True, kind)[1], kind
        # Without the declaration the unlock and the store commute for DPOR:
        # the order that breaks the check is never run.
        assert not _check_at_unlock(False, kind)[1], kind
