"""The CPU's Accessed-bit assist and the flush ``clear_flush_young`` owes.

A guest access through a leaf whose Accessed bit aging cleared sets it again
(``ept_ad_assist``), so a vCPU that walks after the aging makes the page young;
one that keeps the translation in its TLB does not walk, which is why the hook
flushes when it answers young.  A version that drops the flush is reported by
aging-young; 6.13+ (``CONFIG_KVM_ELIDE_TLB_FLUSH_IF_YOUNG``) promises no flush
and is not judged on it.
"""

from __future__ import annotations

from typing import Any

from props_lib import run, scen

from tdpmmu.checker import check
from tdpmmu.kernel import srcu_read_lock, srcu_read_unlock
from tdpmmu.kvm.mmu_lock import KVM_MMU_LOCK, KVM_MMU_UNLOCK
from tdpmmu.kvm.v6_9 import V6_9
from tdpmmu.kvm.v6_18 import V6_18
from tdpmmu.kvm.versions import V5_11

# vcpu0 writes gfn 0x1 (mapped and cached in its TLB), the host ages it, and
# vcpu0 reads it again.
AGE_THEN_READ = scen({"mm": [{"op": "age", "hva": 0x101, "npages": 1}]},
                     [run(0, "write 0x1", "read 0x1", "read 0x1")])


def _clear_flush_young_without_flush(self: Any, kvm: Any, start: int, end: int) -> int:
    """``kvm_mmu_notifier_clear_flush_young`` as ``clear_young``: no flush."""
    idx = srcu_read_lock(kvm.srcu)
    KVM_MMU_LOCK(kvm)
    young = self.kvm_age_hva(kvm, start, end)
    KVM_MMU_UNLOCK(kvm)
    srcu_read_unlock(kvm.srcu, idx)
    return young


class _V5_11NoAgingFlush(V5_11):
    name = "v5.11+clear-flush-young-without-flush"
    kvm_mmu_notifier_clear_flush_young = _clear_flush_young_without_flush


class _V6_9NoAgingFlush(V6_9):
    name = "v6.9+clear-flush-young-without-flush"
    kvm_mmu_notifier_clear_flush_young = _clear_flush_young_without_flush


class _V6_18PromisingTheFlush(V6_18):
    """6.18 judged as if it still promised the flush it elides."""

    name = "v6.18+judged-by-the-flush"
    CONFIG_KVM_ELIDE_TLB_FLUSH_IF_YOUNG = False


def test_clear_flush_young_without_its_flush_is_reported():
    for cls in (_V5_11NoAgingFlush, _V6_9NoAgingFlush):
        v = check(cls, AGE_THEN_READ).violation
        assert v is not None and v.kind == "property", (cls.name, v)
        assert v.message.startswith(
            "aging-young: clear_flush_young(hva 0x101-0x101) returned 1: vcpu0's TLB still "
            "caches gfn 0x1"), v.message
    for cls in (V5_11, V6_9):
        r = check(cls, AGE_THEN_READ)
        assert r.violation is None and r.result.complete, (cls.name, r)


def test_a_version_that_elides_the_flush_is_not_judged_on_it():
    """6.18 elides the flush (``CONFIG_KVM_ELIDE_TLB_FLUSH_IF_YOUNG``): no
    report; judged by the flushing versions' contract, the same code is."""
    r = check(V6_18, AGE_THEN_READ)
    assert r.violation is None and r.result.complete, r
    v = check(_V6_18PromisingTheFlush, AGE_THEN_READ).violation
    assert v is not None and "vcpu0's TLB still caches gfn 0x1" in v.message, v
