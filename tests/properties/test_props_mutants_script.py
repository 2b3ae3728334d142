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
