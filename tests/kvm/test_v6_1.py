"""Linux 6.1 (``V6_1``): era D as in 6.1 -- 5.18's roots, 6.1's flush moves."""

from __future__ import annotations

from typing import Any

import pytest
from kvm_testlib import do, roots, run_vcpu, scenario, vcpu_root, world

from tdpmmu.checker import check
from tdpmmu.kernel import refcount_read
from tdpmmu.kvm.v5_18 import V5_18
from tdpmmu.kvm.v6_1 import V6_1
from tdpmmu.kvm.versions import BUILTIN
from tdpmmu.scenarios import scenario_names


def test_v6_1_is_built_in_a_v5_18():
    assert BUILTIN["v6.1"] is V6_1
    assert issubclass(V6_1, V5_18)


@pytest.mark.parametrize("name", scenario_names())
def test_v6_1_runs_every_builtin_scenario(name):
    """No finding on any built-in scenario (bounded here; the note has the runs)."""
    res = check("v6.1", name, max_executions=15)
    assert res.result.executions >= 1
    assert res.violation is None, res.violation.message


def _counting(base: type) -> type:
    class Counting(base):  # type: ignore[misc, valid-type]
        name = f"{base.name}+count-flushes"
        memslot_flushes = 0

        def kvm_arch_flush_remote_tlbs_memslot(self, kvm: Any, memslot: Any) -> None:
            type(self).memslot_flushes += 1
            super().kvm_arch_flush_remote_tlbs_memslot(kvm, memslot)
    return Counting


@pytest.mark.parametrize("base, flushes", [(V5_18, 0), (V6_1, 1)])
def test_enabling_dirty_logging_flushes_whatever_the_walk_found(base, flushes):
    """b64d740ea7dd (6.1): with nothing mapped, write-protecting the slot
    changes no SPTE; 5.18 then skips the flush, 6.1 flushes anyway."""
    cls = _counting(base)
    w = world(cls, scenario())
    do(w, "dirty_log_enable", slot=0)
    assert cls.memslot_flushes == flushes


def test_zap_gfn_range_bumps_the_invalidation_sequence():
    """6.1's kvm_zap_gfn_range runs as an invalidation of every hva: a fault
    that read the sequence before it retries after it."""
    w = world(V6_1, scenario([run_vcpu(0, "write 0x1")]))
    before = w.kvm.mmu_notifier_seq.value
    do(w, "zap_gfn_range", base_gfn=0, npages=4)
    assert w.kvm.mmu_notifier_seq.value == before + 1
    assert w.kvm.mmu_notifier_count == 0


def test_a_vcpus_last_put_still_makes_its_root_defunct():
    """5.18's defunct path is 6.1's: the unload's put of the only reference
    to a valid root marks it invalid and leaves one reference for its zap."""
    w = world(V6_1, scenario([run_vcpu(0, "write 0x1")]))
    root = vcpu_root(w.kvm.vcpus[0])
    assert refcount_read(root.tdp_mmu_root_count) == 1
    do(w, "vcpu_unload", vcpu=0)
    assert root.role.invalid
    assert refcount_read(root.tdp_mmu_root_count) == 1
    assert root in roots(w.kvm)
