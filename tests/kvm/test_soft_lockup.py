"""A variant that spins without a scheduling point is a soft lockup finding
(``engine.watchdog``); the CLI's side is in ``tests/cli/test_cli_soft_lockup.py``."""

from __future__ import annotations

from typing import Any

import pytest
from kvm_testlib import run_vcpu, scenario

from tdpmmu.checker import check
from tdpmmu.engine.watchdog import set_soft_lockup_threshold
from tdpmmu.kernel import list_for_each_entry
from tdpmmu.kvm.versions import V5_11


class _ZapAllWaitsForVcpus(V5_11):
    """``kvm_tdp_mmu_zap_all`` waits, holding ``mmu_lock``, for the vCPUs to
    drop their roots: they never can (their put takes ``mmu_lock``)."""

    name = "v5.11+zap-all-spins-on-root-count"

    def kvm_tdp_mmu_zap_all(self, kvm: Any) -> None:
        for root in list_for_each_entry(kvm.arch.tdp_mmu_roots):
            while root.root_count > 0:
                pass
        super().kvm_tdp_mmu_zap_all(kvm)


@pytest.fixture
def quick_watchdog():
    old = set_soft_lockup_threshold(0.5)
    yield
    set_soft_lockup_threshold(old)


def test_a_spinning_variant_is_a_soft_lockup_in_its_loop(quick_watchdog):
    scen = scenario([run_vcpu(0, "write 0x1")])
    assert check(V5_11, scen).violation is None
    v = check(_ZapAllWaitsForVcpus, scen).violation
    assert v is not None and v.kind == "livelock", v
    assert v.message.startswith("BUG: soft lockup - host stuck for 0.5s of CPU"), v.message
    assert v.function == "kvm_tdp_mmu_zap_all"
    assert "test_soft_lockup.py" in v.details[0]
