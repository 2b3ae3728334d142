"""The root-lifecycle promises of 5.18-6.9 (issue 7, point 4), each on the
versions that make it: released code verifies, a what-if that breaks it is
reported by the property."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from props_lib import SLOT0, messages, run, scen

from tdpmmu.checker import check
from tdpmmu.kernel import (
    WRITE_ONCE,
    list_for_each_entry,
    list_for_each_entry_rcu,
    rcu_read_lock,
    rcu_read_unlock,
    refcount_dec_and_test,
)
from tdpmmu.kvm.versions import V5_17, V5_18, V6_1, V6_4, V6_6, V6_9

SLOT1 = {"id": 1, "base_gfn": 8, "npages": 4, "hva": 0x200}


def _found(kernel: Any, scenario: Any, name: str, **kw: Any) -> list[str]:
    res = check(kernel, scenario, **kw)
    assert res.violation is not None, f"{kernel.name}: no violation"
    found = messages(res.violation)
    assert any(m.startswith(name) for m in found), found
    return found


def _verified(kernel: Any, scenario: Any, **kw: Any) -> None:
    res = check(kernel, scenario, **kw)
    assert res.violation is None, messages(res.violation)
    assert res.result.complete


# A vCPU keeps its root while the host deletes both memslots, one after the other.
TWO_DELETES = scen({"host": [{"op": "memslot_delete", "slot": 0},
                             {"op": "memslot_delete", "slot": 1}]},
                   [run(0, "write 0x1", "write 0x9")], memslots=[SLOT0, SLOT1])
# The same with the vCPU dropping its root meanwhile.
DELETE_VS_UNLOAD = scen({"host": [{"op": "memslot_delete", "slot": 0}],
                         "vcpu0": [{"op": "vcpu_unload", "vcpu": 0}]},
                        [run(0, "write 0x1", "write 0x9")], memslots=[SLOT0, SLOT1])


def test_the_promises_are_the_versions_own():
    assert not getattr(V5_17, "promises_invalidated_roots_zapped", False)
    assert V5_18.promises_invalidated_roots_zapped and V6_9.promises_invalidated_roots_zapped
    assert V5_18.promises_no_zero_count_root_under_write_lock
    assert V6_1.promises_no_zero_count_root_under_write_lock
    assert not V6_4.promises_no_zero_count_root_under_write_lock
    assert getattr(V6_1, "tdp_mmu_reference_put_by", None) is None
    assert V6_4.tdp_mmu_reference_put_by == "tdp_mmu_zap_root_work"
    assert V6_9.tdp_mmu_reference_put_by == "kvm_tdp_mmu_zap_invalidated_roots"


# ------------------------------------------------ TDP MMU reference put once
class _V6_4ReGift(V6_4):
    """Invalidation gifts the TDP MMU's reference of an already invalid root
    again (the ``!root->role.invalid`` check dropped)."""

    name = "v6.4+regift-invalid-roots"

    def kvm_tdp_mmu_invalidate_all_roots(self, kvm: Any) -> None:
        rcu_read_lock()
        for root in list_for_each_entry_rcu(kvm.arch.tdp_mmu_roots):
            root.role = replace(root.role, invalid=1)
            WRITE_ONCE(root.role_invalid, True)
            self.tdp_mmu_schedule_zap_root(kvm, root)
        rcu_read_unlock()


class _V6_9ReGift(V6_9):
    name = "v6.9+regift-invalid-roots"

    def kvm_tdp_mmu_invalidate_all_roots(self, kvm: Any) -> None:
        for root in list_for_each_entry(kvm.arch.tdp_mmu_roots):
            root.tdp_mmu_scheduled_root_to_zap = True
            root.role = replace(root.role, invalid=1)
            WRITE_ONCE(root.role_invalid, True)


@pytest.mark.parametrize("kernel", [V6_4, V6_6, V6_9])
def test_released_versions_put_the_reference_once(kernel):
    _verified(kernel, TWO_DELETES)
    _verified(kernel, DELETE_VS_UNLOAD)


@pytest.mark.parametrize("kernel", [_V6_4ReGift, _V6_9ReGift])
def test_a_second_gift_is_reported(kernel):
    found = _found(kernel, TWO_DELETES, "tdp-mmu-reference-put-once")
    assert any("a second time" in m for m in found), found


# ------------------------------------- no zero-count root under write lock
class _V5_18LastPutKeepsRoot(V5_18):
    """The last put of an invalid root neither unlinks nor frees it."""

    name = "v5.18+last-put-keeps-root"

    def kvm_tdp_mmu_put_root(self, kvm: Any, root: Any, shared: bool) -> None:
        self.kvm_lockdep_assert_mmu_lock_held(kvm, shared)
        if not refcount_dec_and_test(root.tdp_mmu_root_count):
            return
        if not self.kvm_tdp_root_mark_invalid(root):
            from tdpmmu.kernel import refcount_set
            refcount_set(root.tdp_mmu_root_count, 1)
            self.tdp_mmu_schedule_zap_root(kvm, root)


@pytest.mark.parametrize("kernel", [V5_18, V6_1])
def test_released_versions_show_writers_no_zero_count_root(kernel):
    _verified(kernel, DELETE_VS_UNLOAD)


def test_a_zero_count_root_left_listed_is_reported_to_a_writer():
    """The second deletion takes mmu_lock for write after vcpu0's last put
    left r0 listed at 0 (5.18's WARN would not see it: it skips invalid roots)."""
    s = scen({"host": [{"op": "memslot_delete", "slot": 0},
                       {"op": "memslot_delete", "slot": 1}],
              "vcpu0": [{"op": "vcpu_unload", "vcpu": 0}]},
             [run(0, "write 0x1", "write 0x9")], memslots=[SLOT0, SLOT1])
    _found(_V5_18LastPutKeepsRoot, s, "no-zero-count-root-under-write-lock")


# --------------------------------- invalidated roots zapped at return
class _V6_9FastZapDefers(V6_9):
    """``kvm_mmu_zap_all_fast`` leaves the invalidated roots to their last put."""

    name = "v6.9+fast-zap-defers"

    def kvm_tdp_mmu_zap_invalidated_roots(self, kvm: Any) -> None:
        pass


class _V5_18NoWait(V5_18):
    """5.18's ``kvm_tdp_mmu_zap_invalidated_roots`` without ``flush_workqueue``:
    the fast zap returns while the worker may not have zapped yet."""

    name = "v5.18+no-flush-workqueue"

    def kvm_tdp_mmu_zap_invalidated_roots(self, kvm: Any) -> None:
        pass


@pytest.mark.parametrize("kernel", [V5_18, V6_4, V6_9])
def test_released_versions_zap_the_roots_they_invalidated(kernel):
    _verified(kernel, TWO_DELETES)


@pytest.mark.parametrize("kernel", [_V6_9FastZapDefers, _V5_18NoWait])
def test_a_fast_zap_returning_early_is_reported(kernel):
    found = _found(kernel, TWO_DELETES, "invalidated-roots-zapped")
    assert any("after kvm_mmu_zap_all_fast returned, invalidated root r0 still maps" in m
               for m in found), found


def test_versions_without_the_promise_are_not_judged():
    """5.17 promises nothing at return: the same what-if reports no
    invalidated-roots-zapped there (it is not installed)."""

    class _V5_17FastZapDefers(V5_17):
        name = "v5.17+fast-zap-defers"

        def kvm_tdp_mmu_zap_invalidated_roots(self, kvm: Any) -> None:
            pass

    res = check(_V5_17FastZapDefers, TWO_DELETES)
    assert res.violation is None or not any(
        m.startswith("invalidated-roots-zapped") for m in messages(res.violation))
