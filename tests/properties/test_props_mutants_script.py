"""bench/mutants.py keeps working: a handful of its mutants, run as it runs them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "bench" / "mutants.py"


@pytest.fixture(scope="module")
def mutants():
    spec = importlib.util.spec_from_file_location("bench_mutants", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_mutants"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def _pick(all_mutants, function, operator):
    return next(m for m in all_mutants if m.function == function and m.operator == operator)


def test_every_operator_applies_to_v5_11(mutants):
    ms = mutants.generate(["v5.11"])
    assert {m.operator for m in ms} == {"delete-call", "drop-lock", "negate", "swap",
                                        "or-assign", "drop-check"}
    ids = [m.id for m in ms]
    assert len(ids) == len(set(ids))
    assert ids == [m.id for m in mutants.generate(["v5.11"])]  # stable ids


@pytest.mark.parametrize(("function", "operator", "scenario"), [
    ("kvm_tdp_mmu_zap_gfn_range", "or-assign", "zap-range-tlb"),
    ("get_tdp_mmu_vcpu_root", "drop-lock", "seed-bug"),
    ("mmu_free_root_page", "delete-call", "teardown"),
    ("tdp_mmu_next_root_valid", "negate", "teardown"),
])
def test_a_handful_of_mutants_are_killed(mutants, function, operator, scenario):
    m = _pick(mutants.generate(["v5.11"]), function, operator)
    mid, where, found, _cpu = mutants.run_mutant((m, [scenario], 200))
    assert where == scenario and found is not None, (m.description, found)


def test_the_unmutated_source_survives(mutants):
    m = _pick(mutants.generate(["v5.11"]), "kvm_tdp_mmu_zap_gfn_range", "or-assign")
    import inspect
    import textwrap

    from tdpmmu.kvm.versions import V5_11
    m.source = textwrap.dedent(inspect.getsource(V5_11.kvm_tdp_mmu_zap_gfn_range))
    assert mutants.run_mutant((m, ["zap-range-tlb", "teardown"], 200))[2] is None


def test_equivalent_mutants_have_reasons(mutants):
    reasons = mutants.load_reasons()
    assert all(kind in ("equivalent", "unmodelled") and len(r.split()) >= 5
               for kind, r in reasons.values())


def test_no_mutant_is_made_in_a_what_if_branch(mutants):
    # v5.11's for_each_tdp_mmu_root_yield_safe has the next-root knob's branch
    # (before-body), which the release does not have: no mutant touches it.
    ms = [m for m in mutants.generate(["v5.11"])
          if m.function == "for_each_tdp_mmu_root_yield_safe"]
    assert ms
    assert not any("next_root = list_next_entry" in m.description
                   or "yield_safe_next_before_body" in m.description for m in ms)


def test_a_scenario_that_never_calls_the_function_cannot_kill_its_mutants(mutants):
    """The reduction the script makes (run a mutant only where the baseline's
    exploration calls its function), against running it anyway."""
    from tdpmmu.checker import check
    cheap = ["teardown", "next-root-deleted", "zap-range-tlb"]
    covered = mutants.baseline("v5.11", cheap, 300)
    ms = mutants.generate(["v5.11"])
    tried = 0
    for function in ("age_gfn_range", "kvm_zap_gfn_range", "take_dirty_bits_and_reprotect"):
        for m in [m for m in ms if m.function == function][:3]:
            cls = mutants.mutant_class(m)
            for s in cheap:
                if function in covered[s]:
                    continue
                tried += 1
                mine, orig = check(cls, s, max_executions=300), check("v5.11", s,
                                                                      max_executions=300)
                assert mine.violation is None
                assert mine.result.executions == orig.result.executions
    assert tried >= 10


def test_the_generic_notifier_walk_of_v5_13_is_mutated_and_its_lost_result_killed(mutants):
    """5.13 runs __kvm_handle_hva_range (the model's _kvm_handle_hva_range), not
    5.12's per-root walk: its `ret |=` across memslots is a mutant, killed by
    an invalidation spanning memslots of which only a middle one maps a page."""
    m = _pick(mutants.generate(["v5.13"]), "_kvm_handle_hva_range", "or-assign")
    mid, where, found, _cpu = mutants.run_mutant((m, ["invalidate-across-memslots"], 300))
    assert where == "invalidate-across-memslots" and found.startswith("property: tlb-coherence")
