"""aging-young under 6.15's lockless aging (``CONFIG_KVM_MMU_LOCKLESS_AGING``).

``__kvm_tdp_mmu_age_gfn_range`` answers young from the iterator's snapshot of
an accessed leaf before its ``atomic64_fetch_and``; the zap of invalidated
roots under the read lock can zap the SPTE in between.  The kernel accepts
that answer, so v6.18 must verify the race, while the strict contract of the
versions that age under ``mmu_lock`` reports it (it did, as a false report on
v6.18 age-vs-root-free, before the property knew the contract).  A young
answer with no accessed SPTE at all is still wrong on v6.18.
"""

from __future__ import annotations

from typing import Any

from props_lib import run, scen

from tdpmmu.checker import check
from tdpmmu.kvm.v6_18 import V6_18

AGE_VS_ZAP = scen({"host": [{"op": "memslot_delete", "slot": 0}],
                   "mm": [{"op": "age", "hva": 0x100, "npages": 4}]},
                  [run(0, "write 0x1")])


class _StrictAging(V6_18):
    """v6.18 judged by the contract of the versions that age under mmu_lock."""

    name = "v6.18+strict-aging-contract"
    CONFIG_KVM_MMU_LOCKLESS_AGING = False


class _AgingAlwaysYoung(V6_18):
    """__kvm_tdp_mmu_age_gfn_range answers young whatever it finds."""

    name = "v6.18+aging-always-young"

    def _kvm_tdp_mmu_age_gfn_range(self, kvm: Any, gfn_range: Any, test_only: bool) -> bool:
        super()._kvm_tdp_mmu_age_gfn_range(kvm, gfn_range, test_only)
        return True


def test_lockless_aging_racing_the_zap_of_invalidated_roots_verifies():
    res = check("v6.18", AGE_VS_ZAP)
    assert res.violation is None, res.violation.message
    assert res.result.complete and res.result.executions > 100


def test_the_strict_contract_reports_the_stale_snapshot():
    v = check(_StrictAging, AGE_VS_ZAP).violation
    assert v is not None
    assert v.message.startswith("aging-young: clear_flush_young(hva 0x100-0x103) returned 1: "
                                "it returned young but cleared no Accessed bit"), v.message


def test_a_young_answer_without_an_accessed_spte_is_reported_on_v6_18():
    nothing_mapped = scen({"mm": [{"op": "age", "hva": 0x100, "npages": 4}]})
    v = check(_AgingAlwaysYoung, nothing_mapped).violation
    assert v is not None
    assert v.message.startswith("aging-young: clear_flush_young(hva 0x100-0x103) returned 1: "
                                "it returned young but no SPTE of the range was accessed"), \
        v.message
