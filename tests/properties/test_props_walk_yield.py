"""Walks that go on after a yield with stale state (issue 9, gap 3)."""

from __future__ import annotations

from typing import Any

import pytest

from tdpmmu.checker import check
from tdpmmu.kernel import cond_resched_lock
from tdpmmu.kvm.versions import V5_11


class _ZapYieldWithoutRefresh(V5_11):
    name = "v5.11+zap-yield-without-refresh"

    def tdp_mmu_iter_flush_cond_resched(self, kvm: Any, it: Any) -> bool:
        if self.need_resched(kvm, it):
            self.kvm_flush_remote_tlbs(kvm)
            cond_resched_lock(kvm.mmu_lock)
            return False
        return True


class _WrprotYieldWithoutRefresh(V5_11):
    name = "v5.11+wrprot-yield-without-refresh"

    def tdp_mmu_iter_cond_resched(self, kvm: Any, it: Any) -> None:
        if self.need_resched(kvm, it):
            cond_resched_lock(kvm.mmu_lock)


@pytest.mark.parametrize(("kernel", "scenario"), [
    (_ZapYieldWithoutRefresh, "zap-walk-vs-invalidate"),
    (_WrprotYieldWithoutRefresh, "wrprot-walk-vs-invalidate"),
])
def test_a_walk_going_on_after_a_yield_reads_the_freed_page_table(kernel, scenario):
    v = check(kernel, scenario).violation
    assert v is not None and v.kind == "KASAN", v and v.message
    assert "use-after-free" in v.message
    text = "\n".join(v.details)
    assert "kvm_mmu_page" in text and "Freed by task mm" in text


@pytest.mark.parametrize("kernel", ["v5.10", "v5.11"])
@pytest.mark.parametrize("scenario", ["zap-walk-vs-invalidate", "wrprot-walk-vs-invalidate"])
def test_released_versions_restart_their_walks(kernel, scenario):
    res = check(kernel, scenario)
    assert res.violation is None and res.result.complete
