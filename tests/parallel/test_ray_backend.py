"""``--backend ray``: the same work units on a local Ray instance (bound to loopback)
give what ``-j 1`` gives."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'tdpmmu[ray]')")

from tdpmmu.parallel.backend import RayBackend  # noqa: E402
from tdpmmu.parallel.matrix import run_matrix  # noqa: E402
from tdpmmu.parallel.split import ProgramRef, explore_split  # noqa: E402
from tdpmmu.parallel.units import CheckUnit, run_unit  # noqa: E402


@pytest.fixture(scope="module")
def backend():
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    try:
        with RayBackend() as be:
            yield be
    finally:
        ray.shutdown()


def _key(r):
    v = r.violation
    return (r.executions, r.complete, r.cut_by, v and (v.kind, v.schedule))


def test_ray_matrix_equals_serial(backend):
    units = [CheckUnit(k, "teardown", max_executions=20) for k in ("v5.10", "v5.11")]
    serial = [run_unit(u) for u in units]
    on_ray = run_matrix(units, backend)
    assert [_key(r) for r in on_ray] == [_key(r) for r in serial]
    assert serial[0].violation is not None and serial[1].violation is None


@pytest.mark.parametrize("strategy", ["dpor", "source-dpor"])
def test_ray_split_search_equals_serial(backend, strategy):
    unit = CheckUnit("v5.11", "notifier-vs-unload", strategy=strategy)
    serial = run_unit(unit)
    out = explore_split(ProgramRef("tdpmmu.parallel.units:unit_program", (unit,)), backend,
                        strategy, budget=20)
    assert out.result.complete == serial.complete is True
    assert out.result.violation is None and serial.violation is None
    assert out.units > 1
    assert serial.executions <= out.result.executions <= 1.1 * serial.executions
