"""The shared vocabulary of finding kinds: specific names, broader matches, properties."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tdpmmu import checker
from tdpmmu.report import kinds, to_json


def finding(kind: str, message: str) -> SimpleNamespace:
    return SimpleNamespace(kind=kind, message=message)


def test_refcount_warning_is_refcount_t_and_still_a_warn():
    v = finding("WARN", "refcount_t: underflow; use-after-free.")
    assert kinds.kind_of(v) == kinds.REFCOUNT
    assert kinds.matches(v, "refcount_t") and kinds.matches(v, "WARN")
    assert not kinds.matches(v, "BUG")


def test_plain_warn_is_not_refcount_t():
    v = finding("WARN", "WARNING: CPU: host at tdp_mmu.c: kvm_tdp_mmu_free_root")
    assert kinds.kind_of(v) == "WARN" and not kinds.matches(v, "refcount_t")


def test_property_is_named_by_the_property():
    v = finding("property", "no-zero-count-root: root r0 is on tdp_mmu_roots with root_count 0")
    assert kinds.property_of(v) == "no-zero-count-root"
    assert kinds.matches(v, "no-zero-count-root") and kinds.matches(v, "property")
    assert not kinds.matches(v, "dirty-log-complete")


def test_unknown_query_is_rejected_with_the_vocabulary():
    with pytest.raises(ValueError, match="KVM_BUG_ON"):
        kinds.check_query("BUG_ON")
    for name in (*kinds.KINDS, *kinds.PROPERTY_NAMES):
        kinds.check_query(name)


def test_json_carries_the_vocabulary_kind_of_a_real_finding():
    res = checker.check("v5.10", "seed-bug")
    data = to_json(res)["violation"]
    assert data["finding"] == "BUG" and data["labels"][0] == "BUG"
    assert data["root_cause"]["finding"] == "property"
    assert kinds.property_of(res.violation.root_cause) == "no-zero-count-root"
