"""RCU: grace periods under DPOR, call_rcu, lockdep rules."""

from __future__ import annotations

from types import SimpleNamespace

from tdpmmu.engine import Var, explore
from tdpmmu.kernel import (
    READ_ONCE,
    call_rcu,
    kfree,
    kfree_rcu,
    kmalloc,
    kmemleak_check,
    rcu_assign_pointer,
    rcu_barrier,
    rcu_dereference,
    rcu_dereference_protected,
    rcu_head,
    rcu_read_lock,
    rcu_read_lock_held,
    rcu_read_unlock,
    spin_lock,
    spin_unlock,
    spinlock_t,
    synchronize_rcu,
)


class foo:
    def __init__(self, a: int) -> None:
        self.a = Var(a, "foo.a")
        self.rcu = rcu_head(self)


def setup() -> SimpleNamespace:
    return SimpleNamespace(gp=Var(kmalloc(foo, 1), "gp"), lock=spinlock_t("foo_lock"),
                           seen=None)


def reader(s: SimpleNamespace) -> None:
    rcu_read_lock()
    p = rcu_dereference(s.gp)
    if p is not None:
        s.seen = READ_ONCE(p.a)
    rcu_read_unlock()


def updater(s: SimpleNamespace, wait: bool) -> None:
    spin_lock(s.lock)
    old = rcu_dereference_protected(s.gp, True)
    rcu_assign_pointer(s.gp, None)
    spin_unlock(s.lock)
    if wait:
        synchronize_rcu()
    kfree(old)


def test_publish_unpublish_free_is_safe_with_synchronize_rcu() -> None:
    seen: set[int | None] = set()
    res = explore(setup, [reader, lambda s: updater(s, True)], strategy="dpor",
                  check=lambda s: seen.add(s.seen))
    assert res.ok and res.complete
    assert seen == {1, None}  # the reader ran both before and after the unpublish


def test_free_without_grace_period_is_use_after_free() -> None:
    res = explore(setup, [reader, lambda s: updater(s, False)], strategy="dpor")
    v = res.violation
    assert v is not None and v.kind == "KASAN"
    assert v.message == "BUG: KASAN: use-after-free in reader"
    assert "Freed by task T1:" in v.details


def test_synchronize_rcu_waits_for_the_reader() -> None:
    # Order of events: while the reader is inside its section, the updater's
    # synchronize_rcu cannot return.
    def setup2() -> SimpleNamespace:
        return SimpleNamespace(log=[], step=Var(0, "step"))

    def rd(s: SimpleNamespace) -> None:
        rcu_read_lock()
        s.log.append("in")
        s.step.store(1)
        s.log.append("out")
        rcu_read_unlock()

    def up(s: SimpleNamespace) -> None:
        s.step.load()
        synchronize_rcu()
        s.log.append("gp")

    logs: set[tuple[str, ...]] = set()
    res = explore(setup2, [rd, up], strategy="dpor", check=lambda s: logs.add(tuple(s.log)))
    assert res.ok and res.complete
    assert ("in", "out", "gp") in logs and ("gp", "in", "out") in logs
    assert ("in", "gp", "out") not in logs


def test_synchronize_rcu_in_read_section_is_lockdep_error() -> None:
    def thread(s: SimpleNamespace) -> None:
        rcu_read_lock()
        synchronize_rcu()

    v = explore(setup, [thread]).violation
    assert v is not None and v.kind == "lockdep"
    assert "Illegal synchronize_rcu() in RCU read-side critical section" in v.message
    assert v.function == "thread"


def test_synchronize_rcu_under_spinlock_is_sleeping_bug() -> None:
    def thread(s: SimpleNamespace) -> None:
        spin_lock(s.lock)
        synchronize_rcu()

    v = explore(setup, [thread]).violation
    assert v is not None and v.kind == "BUG"
    assert v.message.startswith("BUG: sleeping function called from invalid context")


def test_nesting_and_held() -> None:
    def thread(s: SimpleNamespace) -> None:
        states = [rcu_read_lock_held()]
        rcu_read_lock()
        rcu_read_lock()
        rcu_read_unlock()
        states.append(rcu_read_lock_held())
        rcu_read_unlock()
        states.append(rcu_read_lock_held())
        s.seen = states

    seen = []
    assert explore(setup, [thread], check=lambda s: seen.append(s.seen)).ok
    assert seen[0] == [False, True, False]


def test_unbalanced_rcu_read_unlock() -> None:
    v = explore(setup, [lambda s: rcu_read_unlock()]).violation
    assert v is not None and v.kind == "lockdep"
    assert v.message == "WARNING: bad unlock balance detected!"


def free_foo(head: rcu_head) -> None:
    kfree(head.owner)


def test_call_rcu_defers_free_past_readers() -> None:
    def up(s: SimpleNamespace) -> None:
        spin_lock(s.lock)
        old = rcu_dereference_protected(s.gp, True)
        rcu_assign_pointer(s.gp, None)
        spin_unlock(s.lock)
        call_rcu(old.rcu, free_foo)

    def check(s: SimpleNamespace) -> None:
        rcu_barrier()  # run what is still queued
        kmemleak_check()

    res = explore(setup, [reader, up], strategy="dpor", check=check)
    assert res.ok and res.complete


def test_callbacks_run_at_a_later_grace_period() -> None:
    def setup2() -> SimpleNamespace:
        s = setup()
        s.log = []
        return s

    def up(s: SimpleNamespace) -> None:
        call_rcu(s, lambda h: h.log.append("cb"))
        s.log.append("queued")
        synchronize_rcu()
        s.log.append("after gp")

    logs = []
    assert explore(setup2, [up], check=lambda s: logs.append(list(s.log))).ok
    assert logs[0] == ["queued", "cb", "after gp"]


def test_pending_callbacks_leak_until_rcu_barrier() -> None:
    def up(s: SimpleNamespace) -> None:
        old = rcu_dereference_protected(s.gp, True)
        rcu_assign_pointer(s.gp, None)
        kfree_rcu(old)

    v = explore(setup, [up], check=lambda s: kmemleak_check()).violation
    assert v is not None and v.kind == "kmemleak"

    def flushed(s: SimpleNamespace) -> None:
        rcu_barrier()
        kmemleak_check()

    assert explore(setup, [up], check=flushed).ok
