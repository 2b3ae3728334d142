"""A version that queues work runs it on kernel worker threads of the model."""

from __future__ import annotations

from tdpmmu.checker import build_model, check, resolve_scenario
from tdpmmu.kvm.versions import V5_11


class WithWorker(V5_11):
    """v5.11 with one kernel worker thread (it never queues work: the worker idles)."""

    name = "v5.11+kworker"
    kworker_threads = 1


def test_versions_without_work_queues_have_no_workers() -> None:
    model = build_model(V5_11, resolve_scenario("teardown"))
    assert not [n for n, _ in model.threads if n.startswith("kworker")]


def test_a_version_asks_for_workers_and_idle_ones_are_no_deadlock() -> None:
    model = build_model(WithWorker, resolve_scenario("teardown"))
    assert [n for n, _ in model.threads if n.startswith("kworker")] == ["kworker/u:0"]
    res = check(WithWorker, "teardown", strategy="random", max_executions=20)
    assert res.violation is None
    assert "kworker/u:0" in res.thread_names
