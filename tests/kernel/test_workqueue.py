"""Work queues: PENDING, flush and drain semantics, destroy's checks, workers as model threads."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest

from tdpmmu.engine import Finding, Var, current_thread, explore
from tdpmmu.kernel import (
    INIT_WORK,
    READ_ONCE,
    WQ_MEM_RECLAIM,
    WQ_UNBOUND,
    WRITE_ONCE,
    alloc_workqueue,
    destroy_workqueue,
    drain_workqueue,
    flush_workqueue,
    kfree,
    kmalloc,
    kmemleak_check,
    kworker,
    mutex,
    mutex_lock,
    mutex_unlock,
    queue_work,
    spin_lock,
    spinlock_t,
    synchronize_rcu,
    work_pending,
    work_struct,
)


class thing:
    def __init__(self) -> None:
        self.work = work_struct(self)


def count_run(work: work_struct) -> None:
    s = work.owner.s
    WRITE_ONCE(s.runs, READ_ONCE(s.runs) + 1)


def setup() -> SimpleNamespace:
    s = SimpleNamespace(wq=alloc_workqueue("kvm", WQ_UNBOUND | WQ_MEM_RECLAIM, 0),
                        runs=Var(0, "runs"), lock=mutex("m"), spin=spinlock_t("spin"),
                        logs={})
    s.a = thing()
    s.a.s = s
    s.b = thing()
    s.b.s = s
    INIT_WORK(s.a.work, count_run)
    INIT_WORK(s.b.work, count_run)
    return s


def log(s: SimpleNamespace, entry: object) -> None:
    s.logs.setdefault(current_thread().name, []).append(entry)


def outcomes(threads: list, strategy: str, setup_fn: Callable[[], SimpleNamespace] = setup
             ) -> set:
    seen: set = set()

    def check(s: SimpleNamespace) -> None:
        seen.add((tuple(sorted((k, tuple(map(str, v))) for k, v in s.logs.items())),
                  s.runs.value))

    res = explore(setup_fn, threads, strategy=strategy, check=check, max_executions=20000)
    assert res.ok, res.violation and (res.violation.message, res.violation.details)
    assert res.complete
    return seen


def test_queue_work_is_false_while_pending_and_item_runs_once_per_queueing() -> None:
    def producer(s: SimpleNamespace) -> None:
        log(s, queue_work(s.wq, s.a.work))
        log(s, queue_work(s.wq, s.a.work))

    seen = outcomes([producer, kworker], "dfs")
    # Either the worker took the item between the two calls (both queue it, it
    # runs twice) or it had not (the second call finds it pending, one run).
    assert seen == {((("producer", ("True", "False")),), 1),
                    ((("producer", ("True", "True")),), 2)}


def test_flush_waits_for_items_queued_before_it() -> None:
    def producer(s: SimpleNamespace) -> None:
        queue_work(s.wq, s.a.work)
        flush_workqueue(s.wq)
        log(s, ("after flush", READ_ONCE(s.runs), work_pending(s.a.work)))

    seen = outcomes([producer, kworker], "dpor")
    assert seen == {((("producer", (str(("after flush", 1, False)),)),), 1)}


def test_flush_does_not_wait_for_items_queued_after_it() -> None:
    def flusher(s: SimpleNamespace) -> None:
        flush_workqueue(s.wq)
        log(s, READ_ONCE(s.runs))

    def producer(s: SimpleNamespace) -> None:
        queue_work(s.wq, s.a.work)

    seen = outcomes([flusher, producer, kworker], "dfs")
    assert {next(iter(dict(k)["flusher"])) for k, _ in seen} == {"0", "1"}


def test_an_execution_may_end_with_its_workers_idle() -> None:
    res = explore(setup, [lambda s: None, kworker, kworker], strategy="dfs")
    assert res.ok and res.complete


def test_a_worker_blocked_elsewhere_is_part_of_a_deadlock() -> None:
    def takes_lock(work: work_struct) -> None:
        mutex_lock(work.owner.s.lock)
        mutex_unlock(work.owner.s.lock)

    def holder(s: SimpleNamespace) -> None:
        INIT_WORK(s.a.work, takes_lock)
        mutex_lock(s.lock)
        queue_work(s.wq, s.a.work)
        # The item waits for the mutex, which the flush keeps: deadlock (and
        # lockdep's report of the same, whichever comes first).
        flush_workqueue(s.wq)
        mutex_unlock(s.lock)

    res = explore(setup, [holder, kworker], strategy="dpor")
    v = res.violation
    assert v is not None and v.kind in ("deadlock", "lockdep")


def test_flush_under_a_lock_an_item_takes_is_a_lockdep_cycle() -> None:
    def takes_lock(work: work_struct) -> None:
        mutex_lock(work.owner.s.lock)
        mutex_unlock(work.owner.s.lock)

    def producer(s: SimpleNamespace) -> None:
        INIT_WORK(s.a.work, takes_lock)
        queue_work(s.wq, s.a.work)
        flush_workqueue(s.wq)  # the item has run, with the mutex, under the queue's map
        mutex_lock(s.lock)
        flush_workqueue(s.wq)  # no deadlock now, but lockdep knows the orders
        mutex_unlock(s.lock)

    v = explore(setup, [producer, kworker], strategy="dpor").violation
    assert v is not None and v.kind == "lockdep"
    assert v.message == "WARNING: possible circular locking dependency detected"
    assert any("(wq_completion)kvm" in line for line in v.details)


def test_flushing_its_own_queue_from_an_item_is_recursive_locking() -> None:
    def flushes(work: work_struct) -> None:
        flush_workqueue(work.owner.s.wq)

    def producer(s: SimpleNamespace) -> None:
        INIT_WORK(s.a.work, flushes)
        queue_work(s.wq, s.a.work)

    v = explore(setup, [producer, kworker], strategy="dpor").violation
    assert v is not None and v.kind == "lockdep"
    assert v.message == "WARNING: possible recursive locking detected"
    assert v.function == "flushes"


def test_an_item_returning_with_a_lock_held_is_reported() -> None:
    def leaks(work: work_struct) -> None:
        spin_lock(work.owner.s.spin)

    def producer(s: SimpleNamespace) -> None:
        INIT_WORK(s.a.work, leaks)
        queue_work(s.wq, s.a.work)

    v = explore(setup, [producer, kworker], strategy="dpor").violation
    assert v is not None and v.kind == "BUG"
    assert v.message.startswith("BUG: workqueue leaked lock or atomic: kworker/")
    assert v.function == "leaks"


def test_an_item_may_free_the_struct_that_embeds_it() -> None:
    def frees_itself(work: work_struct) -> None:
        s = work.owner.s
        WRITE_ONCE(s.runs, 1)
        kfree(work.owner)

    def producer(s: SimpleNamespace) -> None:
        s.c = kmalloc(thing)
        s.c.s = s
        INIT_WORK(s.c.work, frees_itself)
        queue_work(s.wq, s.c.work)
        flush_workqueue(s.wq)

    def check(s: SimpleNamespace) -> None:
        destroy_workqueue(s.wq)  # outside threads: freed at once (no readers to wait for)
        kmemleak_check()

    res = explore(setup, [producer, kworker], strategy="dpor", check=check)
    assert res.ok and res.complete


def test_freeing_a_queued_item_is_use_after_free() -> None:
    def producer(s: SimpleNamespace) -> None:
        s.c = kmalloc(thing)
        s.c.s = s
        INIT_WORK(s.c.work, count_run)
        queue_work(s.wq, s.c.work)
        kfree(s.c)  # still queued: the worker reads a freed item

    v = explore(setup, [producer, kworker], strategy="dpor").violation
    assert v is not None and v.kind == "KASAN"
    assert "Freed by task producer:" in v.details


def test_destroy_drains_pending_items_first() -> None:
    def vm(s: SimpleNamespace) -> None:
        queue_work(s.wq, s.a.work)
        queue_work(s.wq, s.b.work)
        destroy_workqueue(s.wq)
        log(s, READ_ONCE(s.runs))

    seen = outcomes([vm, kworker], "dpor")
    assert seen == {((("vm", ("2",)),), 2)}


def test_flush_and_destroy_outside_threads_run_the_items() -> None:
    s = setup()
    assert queue_work(s.wq, s.a.work)
    flush_workqueue(s.wq)
    assert s.runs.value == 1 and not s.a.work.pending
    queue_work(s.wq, s.b.work)
    destroy_workqueue(s.wq)
    assert s.runs.value == 2


def racing_destroy() -> list:
    """queue_work racing destroy_workqueue; the findings are caught and logged as outcomes."""

    def vm(s: SimpleNamespace) -> None:
        try:
            destroy_workqueue(s.wq)
            log(s, "destroyed")
        except Finding as f:
            log(s, f.message)

    def other(s: SimpleNamespace) -> None:
        try:
            log(s, queue_work(s.wq, s.a.work))
        except Finding as f:
            log(s, f.message)

    return [vm, other, kworker]


def test_queue_work_racing_destroy_is_warned_while_draining_or_after() -> None:
    seen = outcomes(racing_destroy(), "dfs")
    messages = {m for k, _ in seen for _, entries in k for m in entries}
    # Before the drain: the item runs and the queue is destroyed cleanly.
    assert "destroyed" in messages
    # During the drain: __queue_work's WARN_ON_ONCE (the item is dropped).
    assert any(m.endswith("kernel/workqueue.c: __queue_work") for m in messages)
    # Between the drain and destroy's check: the busy-pwq WARN.
    assert "destroy_workqueue: kvm has the following busy pwq" in messages


def test_queue_work_on_a_freed_queue_is_use_after_free() -> None:
    def vm(s: SimpleNamespace) -> None:
        destroy_workqueue(s.wq)
        synchronize_rcu()  # rcu_free_wq runs: the queue is gone
        queue_work(s.wq, s.a.work)

    v = explore(setup, [vm, kworker], strategy="dpor").violation
    assert v is not None and v.kind == "KASAN"
    assert v.message == "BUG: KASAN: use-after-free in vm"
    assert any("rcu_free_wq" in line or "vm" in line for line in v.details)


def test_an_item_may_requeue_itself_while_its_queue_drains() -> None:
    def again(work: work_struct) -> None:
        s = work.owner.s
        n = READ_ONCE(s.runs)
        WRITE_ONCE(s.runs, n + 1)
        if n == 0:
            queue_work(s.wq, work)  # chained work: allowed while draining

    def vm(s: SimpleNamespace) -> None:
        INIT_WORK(s.a.work, again)
        queue_work(s.wq, s.a.work)
        drain_workqueue(s.wq)
        log(s, READ_ONCE(s.runs))

    seen = outcomes([vm, kworker], "dpor")
    assert seen == {((("vm", ("2",)),), 2)}


# ------------------------------------------------------- DPOR against DFS
def p_two_producers_one_flusher() -> list:
    def producer(s: SimpleNamespace) -> None:
        log(s, queue_work(s.wq, s.a.work))

    def flusher(s: SimpleNamespace) -> None:
        flush_workqueue(s.wq)
        log(s, READ_ONCE(s.runs))

    return [producer, producer, flusher, kworker]


def p_two_workers_lost_update() -> list:
    def producer(s: SimpleNamespace) -> None:
        queue_work(s.wq, s.a.work)
        queue_work(s.wq, s.b.work)
        flush_workqueue(s.wq)
        log(s, READ_ONCE(s.runs))

    return [producer, kworker, kworker]


def p_requeue_while_running() -> list:
    def producer(s: SimpleNamespace) -> None:
        log(s, queue_work(s.wq, s.a.work))
        log(s, work_pending(s.a.work))
        log(s, queue_work(s.wq, s.a.work))

    return [producer, kworker]


PROGRAMS: dict[str, Callable[[], list]] = {
    "two-producers-one-flusher": p_two_producers_one_flusher,
    "two-workers-lost-update": p_two_workers_lost_update,
    "requeue-while-running": p_requeue_while_running,
    "queue-racing-destroy": racing_destroy,
}


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_dpor_reaches_every_dfs_outcome_with_work_queues(name: str) -> None:
    dfs = outcomes(PROGRAMS[name](), "dfs")
    dpor = outcomes(PROGRAMS[name](), "dpor")
    assert dpor == dfs
    assert len(dfs) > 1


def test_two_workers_run_two_items_at_once() -> None:
    # Two workers: the items' read-modify-writes can interleave and lose one.
    seen = outcomes(p_two_workers_lost_update(), "dpor")
    assert {runs for _, runs in seen} == {1, 2}
