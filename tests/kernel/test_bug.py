"""BUG/BUG_ON/WARN: messages, call sites, panic_on_warn."""

from __future__ import annotations

from types import SimpleNamespace

import kmodel_mmu as model_mmu  # a model module with a __kernel_file__
import pytest

from tdpmmu.engine import Finding, Var, current_execution, explore
from tdpmmu.kernel import BUG, WARN_ON, set_panic_on_warn


def test_bug_names_kernel_file_and_function() -> None:
    def thread(s: object) -> None:
        model_mmu.kvm_mmu_get_root(0)

    v = explore(lambda: None, [thread]).violation
    assert v is not None and v.kind == "BUG"
    assert v.message == "kernel BUG at arch/x86/kvm/mmu/mmu_internal.h: kvm_mmu_get_root"
    assert v.function == "kvm_mmu_get_root"
    assert "  kvm_mmu_get_root" in v.details and "  thread" in v.details


def test_per_function_kernel_file_names_the_file_the_function_lives_in() -> None:
    """A module's ``__kernel_files__`` places one of its functions in another file;
    a function listed in several files is placed in the module's own if it is one."""
    v = explore(lambda: None, [lambda s: model_mmu.kvm_mmu_zap_all_fast(-1)]).violation
    assert v is not None
    assert v.message == "WARNING: CPU: T0 at arch/x86/kvm/mmu/mmu.c: kvm_mmu_zap_all_fast"
    v = explore(lambda: None, [lambda s: model_mmu.kvm_mmu_get_root(0)]).violation
    assert v is not None
    assert v.message == "kernel BUG at arch/x86/kvm/mmu/mmu_internal.h: kvm_mmu_get_root"


def test_bug_on_false_does_nothing() -> None:
    assert explore(lambda: None, [lambda s: model_mmu.kvm_mmu_get_root(1)]).ok


def test_bug_without_kernel_file_uses_python_file() -> None:
    def my_func(s: object) -> None:
        BUG()

    v = explore(lambda: None, [my_func]).violation
    assert v is not None and v.message == "kernel BUG at test_bug.py: my_func"


def test_warn_is_fatal_by_default() -> None:
    reached = []

    def thread(s: object) -> None:
        model_mmu.check_root(-1)
        reached.append(True)

    v = explore(lambda: None, [thread]).violation
    assert v is not None and v.kind == "WARN"
    assert v.message == "WARNING: CPU: thread at arch/x86/kvm/mmu/mmu_internal.h: check_root"
    assert v.function == "check_root"
    assert reached == []


def test_warn_with_message() -> None:
    v = explore(lambda: None, [lambda s: model_mmu.check_root_msg(-3)]).violation
    assert v is not None and v.kind == "WARN"
    assert v.message == "bad root_count -3"
    assert v.details[0].startswith("WARNING: CPU: T0 at arch/x86/kvm/mmu/mmu_internal.h: "
                                   "check_root_msg")


def test_warn_on_returns_condition_outside_threads() -> None:
    assert WARN_ON(False) is False
    with pytest.raises(Finding):
        WARN_ON(True)  # outside an execution a WARN cannot be recorded: it raises


def test_nonfatal_warn_continues_and_records_soft_finding() -> None:
    def setup() -> SimpleNamespace:
        return SimpleNamespace(after=[])

    def thread(s: SimpleNamespace) -> None:
        set_panic_on_warn(False)  # for this execution only
        s.after.append(model_mmu.check_root(-1))
        s.after.append(model_mmu.check_root(5))

    finished = []
    res = explore(setup, [thread], check=lambda s: finished.append(list(s.after)))
    assert finished[0] == [True, False]  # the thread ran on past the warning
    v = res.violation
    assert v is not None and v.kind == "WARN"  # the soft finding is still reported
    assert v.function == "check_root"
    assert v.message == "WARNING: CPU: thread at arch/x86/kvm/mmu/mmu_internal.h: check_root"
    # and the setting did not leak out of the execution
    assert explore(lambda: None, [lambda s: model_mmu.check_root(-1)]).violation.kind == "WARN"


def test_soft_warn_is_root_cause_of_later_bug() -> None:
    def thread(s: object) -> None:
        set_panic_on_warn(False)
        model_mmu.check_root(-1)
        model_mmu.kvm_mmu_get_root(0)

    v = explore(lambda: None, [thread]).violation
    assert v is not None and v.kind == "BUG"
    assert v.root_cause is not None and v.root_cause.kind == "WARN"


def test_global_default_panic_on_warn() -> None:
    old = set_panic_on_warn(False)
    try:
        res = explore(lambda: None, [lambda s: model_mmu.check_root(-1)])
    finally:
        set_panic_on_warn(old)
    assert old is True
    assert res.violation is not None and res.violation.kind == "WARN"
    assert not res.violation.details[-1].startswith("Kernel panic")


def test_warn_on_once_warns_once_per_execution() -> None:
    def setup() -> SimpleNamespace:
        return SimpleNamespace(results=[], x=Var(0, "x"))

    def thread(s: SimpleNamespace) -> None:
        set_panic_on_warn(False)
        s.results.append(model_mmu.check_root_once(-1))
        s.results.append(model_mmu.check_root_once(-1))
        s.x.store(1)  # a last step, so the invariant sees the whole execution

    soft_counts: list[int] = []

    def count_soft(s: SimpleNamespace) -> None:
        soft_counts.append(len(current_execution().soft))

    results: list[list[bool]] = []
    res = explore(setup, [thread], invariant=count_soft,
                  check=lambda s: results.append(s.results))
    assert res.violation is not None and res.violation.kind == "WARN"
    assert results[0] == [True, True]  # the condition is returned both times
    assert max(soft_counts) == 1  # but reported once
    # a second execution warns again (once per execution, not per process)
    assert explore(setup, [thread]).violation is not None
