"""Linux 5.17 (``V5_17``): 5.16's fixes on top of 5.15."""

from __future__ import annotations

import pytest

from tdpmmu.checker import check
from tdpmmu.kvm.v5_15 import V5_15
from tdpmmu.kvm.v5_17 import V5_17
from tdpmmu.kvm.versions import BUILTIN
from tdpmmu.scenarios import scenario_names

NOTIFIER_PROPS = ("mmu-notifier", "invalidation-complete")
KNOWN = {"memslot-vs-fault-and-notifier": NOTIFIER_PROPS}


def test_v5_17_is_built_in_and_a_v5_15():
    assert BUILTIN["v5.17"] is V5_17
    assert issubclass(V5_17, V5_15)


@pytest.mark.parametrize("name", scenario_names())
def test_v5_17_runs_every_builtin_scenario(name):
    res = check("v5.17", name, max_executions=15)
    assert res.result.executions >= 1
    if res.violation is not None:
        assert name in KNOWN and res.violation.message.startswith(KNOWN[name]), \
            res.violation.message


def test_yield_restart_no_longer_skips_an_entry():
    """3a0f64de479c is in 5.16: the memslot zap that yields zaps every entry."""
    res = check("v5.17", "memslot-delete-then-munmap")
    assert res.result.complete and res.violation is None


def test_notifier_unmap_holds_a_reference_while_it_yields():
    """7533377215b6 is in 5.16: the yield-safe iterator keeps the root alive."""
    res = check("v5.17", "notifier-yield-vs-last-put")
    assert res.result.complete and res.violation is None


def test_notifier_skips_an_invalid_root_being_zapped():
    """d62007edf01f ("Zap _all_ roots when unmapping gfn range in TDP MMU",
    5.18-rc1; Fixes: b7cccd397f31): from 7533377215b6 the notifier's unmap
    takes references with kvm_tdp_mmu_get_root, which refuses invalid roots,
    so while a memslot update's zapper yields under the read lock the
    notifier returns with the invalid root still mapping the page.  (v5.15's
    unmap walked invalid roots too: there the same scenario is clean.)"""
    res = check("v5.17", "memslot-vs-fault-and-notifier", strategy="pct",
                max_executions=3000, seed=0)
    assert res.violation is not None
    assert res.violation.message.startswith(NOTIFIER_PROPS)
    assert "root r0 maps gfn 0x9" in res.violation.message
