"""Linux 5.15 (``V5_15``): the generic notifier walkers, zap-all at the root level."""

from __future__ import annotations

import pytest

from tdpmmu.checker import check
from tdpmmu.kvm.v5_13 import V5_13
from tdpmmu.kvm.v5_15 import V5_15
from tdpmmu.kvm.versions import BUILTIN
from tdpmmu.scenarios import scenario_names

# A deleted slot's pages still mapped: reported when the deletion returns
# (memslot-removed) or, at the latest, when the host's munmap notifier returns.
NOTIFIER_PROPS = ("memslot-removed", "mmu-notifier", "invalidation-complete")
# Findings of the released v5.15 on built-in scenarios (each has a test below).
KNOWN = {
    "notifier-yield-vs-last-put": ("BUG: KASAN: use-after-free",),
    "memslot-delete-then-munmap": NOTIFIER_PROPS,
}


def test_v5_15_is_built_in_and_a_v5_13():
    assert BUILTIN["v5.15"] is V5_15
    assert issubclass(V5_15, V5_13)


@pytest.mark.parametrize("name", scenario_names())
def test_v5_15_runs_every_builtin_scenario(name):
    """Bounded so CI stays fast; the closing note records the long runs."""
    res = check("v5.15", name, max_executions=15)
    assert res.result.executions >= 1
    if res.violation is not None:
        assert name in KNOWN and res.violation.message.startswith(KNOWN[name]), \
            res.violation.message


def test_notifier_unmap_yields_in_a_root_it_holds_no_reference_on():
    """7533377215b6 ("KVM: x86/mmu: Use yield-safe TDP MMU root iter in MMU
    notifier unmapping", 5.16, Cc stable; Fixes: e1eed5847b09 of 5.13): 5.15's
    kvm_tdp_mmu_unmap_gfn_range walks the roots with the plain
    for_each_tdp_mmu_root and lets the zap yield mmu_lock; the vCPU's last
    put unlinks and frees the root meanwhile (after a grace period), and the
    walk then reads the freed root's list link."""
    res = check("v5.15", "notifier-yield-vs-last-put")
    assert res.violation is not None
    assert res.violation.message.startswith("BUG: KASAN: use-after-free")
    assert "kvm_tdp_mmu_unmap_gfn_range" in "\n".join(res.violation.details) or \
        "for_each_tdp_mmu_root" in res.violation.message


def test_zap_all_after_a_yield_skips_a_root_level_entry():
    """3a0f64de479c ("Don't advance iterator after restart due to yielding",
    5.16-rc7): with 0103098fb4f1 a zap of everything stays at the root level;
    after a yield the iterator restarts on the entry it stopped at and the
    caller's continue advances past it, so the invalid root keeps that
    entry's leaves.  Once userspace unmaps the deleted slot the root still
    maps the freed page (root_level 3: root-level entries are tables)."""
    res = check("v5.15", "memslot-delete-then-munmap")
    assert res.violation is not None
    assert res.violation.message.startswith(NOTIFIER_PROPS)
    assert "maps gfn 0x11" in res.violation.message


def test_v5_13_model_walks_the_memslot_zap_fully():
    """Before 0103098fb4f1 the zap-all steps down into the skipped entry, so
    the same scenario verifies on v5.13 (the oracle's v5.12 row)."""
    res = check("v5.13", "memslot-delete-then-munmap")
    assert res.result.complete and res.violation is None


def test_the_freed_root_is_reported_only_once_a_grace_period_can_end():
    """The root goes back to the slab through call_rcu: without a thread that
    completes a grace period while the walk is outside its read-side section
    (the scenario's "rcu" thread, op rcu_grace_period) the unlinked root is
    stale but still allocated, and the same space verifies."""
    from dataclasses import replace

    from tdpmmu.checker import resolve_scenario

    sc = resolve_scenario("notifier-yield-vs-last-put")
    no_gp = replace(sc, threads=[t for t in sc.threads if t[0] != "rcu"])
    res = check("v5.15", no_gp)
    assert res.result.complete and res.violation is None
