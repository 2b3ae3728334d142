"""lockdep: assertions, atomic context, recursive and read/write lock-order rules."""

from __future__ import annotations

from types import SimpleNamespace

from tdpmmu.engine import explore
from tdpmmu.kernel import (
    atomic_dec,
    atomic_inc_return,
    atomic_read,
    atomic_t,
    in_atomic,
    lockdep_assert_held,
    lockdep_assert_held_read,
    lockdep_assert_held_write,
    lockdep_is_held,
    might_sleep,
    preempt_count,
    rcu_read_lock,
    rcu_read_unlock,
    read_lock,
    read_unlock,
    rwlock_t,
    spin_lock,
    spin_unlock,
    spinlock_t,
    write_lock,
    write_unlock,
)


def locks() -> SimpleNamespace:
    return SimpleNamespace(mmu_lock=spinlock_t("&kvm->mmu_lock"), rw=rwlock_t("&kvm->rw"),
                           other=spinlock_t("other"), out=[])


def test_lockdep_assert_held_warns_when_not_held() -> None:
    def kvm_tdp_mmu_zap_all(s: SimpleNamespace) -> None:
        lockdep_assert_held(s.mmu_lock)

    v = explore(locks, [kvm_tdp_mmu_zap_all]).violation
    assert v is not None and v.kind == "WARN"
    assert v.function == "kvm_tdp_mmu_zap_all"
    assert "at test_lockdep.py: kvm_tdp_mmu_zap_all" in v.message


def test_lockdep_assert_held_passes_for_holder_and_tracks_atomic() -> None:
    def thread(s: SimpleNamespace) -> None:
        s.out.append((in_atomic(), preempt_count()))
        spin_lock(s.mmu_lock)
        lockdep_assert_held(s.mmu_lock)
        s.out.append((in_atomic(), preempt_count(), lockdep_is_held(s.other)))
        spin_unlock(s.mmu_lock)
        s.out.append((in_atomic(), preempt_count()))

    seen = []
    assert explore(locks, [thread], check=lambda s: seen.append(s.out)).ok
    assert seen[0] == [(False, 0), (True, 1, False), (False, 0)]


def test_held_read_vs_write_assertions() -> None:
    def reader(s: SimpleNamespace) -> None:
        read_lock(s.rw)
        lockdep_assert_held(s.rw)
        lockdep_assert_held_read(s.rw)
        lockdep_assert_held_write(s.rw)  # wrong: held for read only
        read_unlock(s.rw)

    v = explore(locks, [reader]).violation
    assert v is not None and v.kind == "WARN" and v.function == "reader"

    def writer(s: SimpleNamespace) -> None:
        write_lock(s.rw)
        lockdep_assert_held_write(s.rw)
        write_unlock(s.rw)

    assert explore(locks, [writer]).ok


def test_might_sleep_under_spinlock_is_a_bug() -> None:
    def thread(s: SimpleNamespace) -> None:
        spin_lock(s.mmu_lock)
        might_sleep()

    v = explore(locks, [thread]).violation
    assert v is not None and v.kind == "BUG"
    assert v.message.startswith("BUG: sleeping function called from invalid context")
    assert v.function == "thread"
    assert any("&kvm->mmu_lock" in d for d in v.details)


def test_might_sleep_in_rcu_section_is_a_bug() -> None:
    def thread(s: SimpleNamespace) -> None:
        rcu_read_lock()
        might_sleep()

    v = explore(locks, [thread]).violation
    assert v is not None and v.message.startswith("BUG: sleeping function called")
    assert "RCU nest depth: 1, expected: 0" in v.details

    def fine(s: SimpleNamespace) -> None:
        rcu_read_lock()
        rcu_read_unlock()
        might_sleep()

    assert explore(locks, [fine]).ok


def test_same_class_nesting_is_recursive_locking() -> None:
    def setup() -> SimpleNamespace:
        return SimpleNamespace(a=spinlock_t("&kvm->mmu_lock"), b=spinlock_t("&kvm->mmu_lock"))

    def thread(s: SimpleNamespace) -> None:
        spin_lock(s.a)
        spin_lock(s.b)

    v = explore(setup, [thread]).violation
    assert v is not None and v.kind == "lockdep"
    assert v.message == "WARNING: possible recursive locking detected"


def test_write_lock_while_reading_is_recursive_locking() -> None:
    def thread(s: SimpleNamespace) -> None:
        read_lock(s.rw)
        write_lock(s.rw)

    v = explore(locks, [thread]).violation
    assert v is not None and v.message == "WARNING: possible recursive locking detected"


def test_recursive_read_lock_allowed() -> None:
    def thread(s: SimpleNamespace) -> None:
        read_lock(s.rw)
        read_lock(s.rw)
        read_unlock(s.rw)
        read_unlock(s.rw)

    assert explore(locks, [thread]).ok


def _order(first: str, first_read: bool, second: str, second_read: bool):
    def take(s: SimpleNamespace) -> None:
        for name, read in ((first, first_read), (second, second_read)):
            lock = getattr(s, name)
            if isinstance(lock, rwlock_t):
                (read_lock if read else write_lock)(lock)
            else:
                spin_lock(lock)
        for name, read in ((second, second_read), (first, first_read)):
            lock = getattr(s, name)
            if isinstance(lock, rwlock_t):
                (read_unlock if read else write_unlock)(lock)
            else:
                spin_unlock(lock)
    return take


def test_read_read_inversion_is_not_a_cycle() -> None:
    # T0: read(rw) -> other; T1: other -> read(rw).  Readers never block
    # readers, so no deadlock is possible and lockdep must stay quiet.
    t0 = _order("rw", True, "other", False)
    t1 = _order("other", False, "rw", True)
    res = explore(locks, [t0, t1], strategy="dpor")
    assert res.ok and res.complete


def test_read_write_inversion_is_a_cycle() -> None:
    # T0: read(rw) -> other; T1: other -> write(rw): T1 can wait for T0's read hold.
    t0 = _order("rw", True, "other", False)
    t1 = _order("other", False, "rw", False)
    v = explore(locks, [t0, t1], strategy="dfs", max_executions=1).violation
    assert v is not None and v.kind == "lockdep"
    assert v.message == "WARNING: possible circular locking dependency detected"


def test_writer_holding_blocks_reader_cycle() -> None:
    # T0: write(rw) -> other; T1: other -> read(rw): the reader waits for the writer.
    t0 = _order("rw", False, "other", False)
    t1 = _order("other", False, "rw", True)
    v = explore(locks, [t0, t1], strategy="dfs", max_executions=1).violation
    assert v is not None and v.kind == "lockdep"


def test_three_lock_cycle() -> None:
    def setup() -> SimpleNamespace:
        return SimpleNamespace(a=spinlock_t("A"), b=spinlock_t("B"), c=spinlock_t("C"))

    t0, t1, t2 = _order("a", False, "b", False), _order("b", False, "c", False), \
        _order("c", False, "a", False)
    v = explore(setup, [t0, t1, t2], strategy="dfs", max_executions=1).violation
    assert v is not None and v.kind == "lockdep"
    assert sum(d.startswith("-> #") for d in v.details) == 2  # A -> B -> C existed


def test_bad_unlock_balance_for_rwlock() -> None:
    def thread(s: SimpleNamespace) -> None:
        read_unlock(s.rw)

    v = explore(locks, [thread]).violation
    assert v is not None and v.kind == "lockdep"
    assert v.message == "WARNING: bad unlock balance detected!"


def test_rwlock_readers_share_writers_exclude() -> None:
    def setup() -> SimpleNamespace:
        s = locks()
        s.inside = atomic_t(0, "inside")
        s.max = 0
        s.bad = False
        return s

    def reader(s: SimpleNamespace) -> None:
        read_lock(s.rw)
        s.max = max(s.max, atomic_inc_return(s.inside))
        atomic_dec(s.inside)
        read_unlock(s.rw)

    def writer(s: SimpleNamespace) -> None:
        write_lock(s.rw)
        if atomic_read(s.inside) != 0:
            s.bad = True
        write_unlock(s.rw)

    maxima: set[int] = set()
    res = explore(setup, [reader, reader, writer], strategy="dpor",
                  check=lambda s: (maxima.add(s.max), None)[1])
    assert res.ok and res.complete
    assert 2 in maxima  # two readers were inside together in some interleaving
    bad = []
    explore(setup, [reader, reader, writer], strategy="dpor",
            check=lambda s: bad.append(s.bad))
    assert not any(bad)


def test_write_trylock_fails_while_a_reader_holds() -> None:
    from tdpmmu.kernel import write_trylock

    def setup() -> SimpleNamespace:
        s = locks()
        s.got = None
        return s

    def reader(s: SimpleNamespace) -> None:
        read_lock(s.rw)
        read_unlock(s.rw)

    def trier(s: SimpleNamespace) -> None:
        s.got = write_trylock(s.rw)
        if s.got:
            write_unlock(s.rw)

    outcomes: set[int] = set()
    res = explore(setup, [trier, reader], strategy="dpor",
                  check=lambda s: outcomes.add(s.got))
    assert res.ok and outcomes == {0, 1}


def test_cond_resched_rwlock_read_yields() -> None:
    from tdpmmu.kernel import cond_resched_rwlock_read

    def setup() -> SimpleNamespace:
        s = locks()
        s.x = 0
        s.seen = None
        return s

    def reader(s: SimpleNamespace) -> None:
        read_lock(s.rw)
        before = s.x
        cond_resched_rwlock_read(s.rw)
        s.seen = (before, s.x)
        read_unlock(s.rw)

    def writer(s: SimpleNamespace) -> None:
        write_lock(s.rw)
        s.x = 1
        write_unlock(s.rw)

    outcomes: set[tuple[int, int]] = set()
    res = explore(setup, [reader, writer], strategy="dpor",
                  check=lambda s: outcomes.add(s.seen))
    assert res.ok and (0, 1) in outcomes


def test_sleeping_lock_is_not_atomic_context() -> None:
    class sleeping_lock(spinlock_t):
        __slots__ = ()
        sleeping = True  # as a mutex declares itself

    def setup() -> SimpleNamespace:
        return SimpleNamespace(m=sleeping_lock("&kvm->slots_lock"), s=spinlock_t("mmu"))

    def thread(s: SimpleNamespace) -> None:
        spin_lock(s.m)
        assert not in_atomic()
        might_sleep()  # fine under a sleeping lock
        spin_lock(s.s)
        might_sleep()  # not under a spinlock

    v = explore(setup, [thread]).violation
    assert v is not None and v.message.startswith("BUG: sleeping function called")
