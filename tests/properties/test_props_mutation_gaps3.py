"""Survivors of bench/mutants.py closed by a property or a scenario (third round):
a failed dirty-log read of a logging slot, a gfn-range zap that leaves an SPTE
of its range, and a KVM_CLEAR_DIRTY_LOG of a page whose SPTE is already
read-only.  Each realistic bug is caught, and the releases still verify."""

from __future__ import annotations

from typing import Any

import pytest
from props_lib import messages, run, scen

from tdpmmu.checker import check
from tdpmmu.kvm.spte import PG_LEVEL_4K, is_accessed_spte
from tdpmmu.kvm.tdp_mmu import spte_with_dirty_cleared
from tdpmmu.kvm.versions import V5_11

RELEASES = ("v5.11", "v5.12", "v5.13", "v5.18", "v6.1", "v6.9", "v6.18")


class _GetDirtyLogRefusesLoggingSlot(V5_11):
    """kvm_get_dirty_log_protect with its -ENOENT test inverted."""

    name = "v5.11+get-dirty-log-enoent"

    def kvm_get_dirty_log_protect(self, kvm: Any, as_id: int, slot_id: int) -> Any:
        slot = kvm.memslots[as_id].value.id_to_memslot(slot_id)
        if not (slot is None or slot.dirty_bitmap is None):
            return None
        return super().kvm_get_dirty_log_protect(kvm, as_id, slot_id)


class _ZapGfnRangeRmapsOnly(V5_11):
    """kvm_zap_gfn_range that zaps only the legacy rmaps (tdp_mmu_enabled test
    inverted), leaving the TDP MMU's SPTEs of the range."""

    name = "v5.11+zap-gfn-range-rmaps-only"

    def kvm_zap_gfn_range(self, kvm: Any, gfn_start: int, gfn_end: int) -> None:
        from tdpmmu.kvm.mmu_lock import KVM_MMU_LOCK, KVM_MMU_UNLOCK
        KVM_MMU_LOCK(kvm)
        self.kvm_zap_gfn_range_rmaps(kvm, gfn_start, gfn_end)
        KVM_MMU_UNLOCK(kvm)


class _ClearStoresNothingToClear(V5_11):
    """clear_dirty_pt_masked stores the SPTE before testing whether there was
    anything to clear (the None of an already read-only SPTE)."""

    name = "v5.11+clear-stores-none"

    def clear_dirty_pt_masked(self, kvm: Any, root: Any, gfn: int, mask: int,
                              wrprot: bool) -> None:
        if not mask:
            return
        first = (mask & -mask).bit_length() - 1
        for it in self.tdp_root_for_each_leaf_pte(kvm, root, gfn + first, gfn + 64):
            if not mask:
                break
            if it.level > PG_LEVEL_4K or not mask & (1 << (it.gfn - gfn)):
                continue
            new_spte = spte_with_dirty_cleared(it.old_spte, wrprot)
            self.tdp_mmu_set_spte_no_dirty_log(kvm, it, new_spte)
            if new_spte is None:
                continue
            mask &= ~(1 << (it.gfn - gfn))


LOGGING_SLOT = {"id": 0, "base_gfn": 0, "npages": 4, "hva": 0x100, "log_dirty": True}


def test_a_failed_dirty_log_read_of_a_logging_slot_is_reported():
    s = scen({"host": [{"op": "get_dirty_log", "slot": 0}], "vcpu0": [run(0, "write 0x1")]},
             memslots=[LOGGING_SLOT])
    assert check("v5.11", s).violation is None
    v = check(_GetDirtyLogRefusesLoggingSlot, s).violation
    assert v is not None and any(m.startswith("dirty-log-complete: KVM_GET_DIRTY_LOG on slot 0 "
                                              "(as_id 0) failed") for m in messages(v)), \
        v and messages(v)


def test_a_failed_read_of_a_slot_without_logging_is_not_reported():
    s = scen({"host": [{"op": "get_dirty_log", "slot": 0}], "vcpu0": [run(0, "write 0x1")]})
    assert check("v5.11", s).violation is None


def test_a_gfn_range_zap_that_leaves_an_spte_is_reported():
    # No vCPU runs during the zap: no TLB entry is involved, only the SPTE.
    s = scen({"host": [{"op": "zap_gfn_range", "base_gfn": 1, "npages": 2}]},
             [run(0, "write 0x1", "write 0x3")])
    assert check("v5.11", s).violation is None
    v = check(_ZapGfnRangeRmapsOnly, s).violation
    assert v is not None and v.message.startswith(
        "zap-range-complete: kvm_zap_gfn_range(gfn 0x1-0x2) returned and root "), v and v.message


@pytest.mark.parametrize("release", RELEASES)
def test_releases_verify_the_zap_and_dirty_log_scenarios(release):
    for name in ("zap-range-tlb", "dirty-log-clear-write-protected"):
        assert check(release, name, max_executions=300).violation is None, (release, name)


def test_clearing_a_page_whose_spte_is_read_only_is_exercised():
    v = check(_ClearStoresNothingToClear, "dirty-log-clear-write-protected").violation
    assert v is not None, "the scenario never clears a dirty page with a read-only SPTE"


class _AgingWithoutStore(V5_11):
    """age_gfn_range answers young but never clears the Accessed bit."""

    name = "v5.11+age-without-store"

    def age_gfn_range(self, kvm: Any, slot: Any, root: Any, start: int, end: int,
                      unused: Any) -> int:
        young = 0
        for it in self.tdp_root_for_each_leaf_pte(kvm, root, start, end):
            if is_accessed_spte(it.old_spte):
                young = 1
        return young


class _AgingAnswersOld(V5_11):
    """age_gfn_range clears the Accessed bits but answers old."""

    name = "v5.11+age-answers-old"

    def age_gfn_range(self, kvm: Any, slot: Any, root: Any, start: int, end: int,
                      unused: Any) -> int:
        super().age_gfn_range(kvm, slot, root, start, end, unused)
        return 0


class _TestAgeAnswersOld(V5_11):
    """test_age_gfn answers old whatever the SPTE says."""

    name = "v5.11+test-age-answers-old"

    def test_age_gfn(self, kvm: Any, slot: Any, root: Any, gfn: int, unused: int,
                     unused2: Any) -> int:
        return 0


AGING = scen({"host": [{"op": "test_age", "hva": 0x101},
                       {"op": "age", "hva": 0x100, "npages": 4}]},
             [run(0, "write 0x1")])


# v5.12's test_age_gfn walks outside rcu_read_lock: its first test_age is
# lockdep's RCU splat (tests/kvm/test_prove_rcu.py), before any answer to judge.
@pytest.mark.parametrize("release", [r for r in RELEASES if r != "v5.12"])
def test_releases_answer_aging_right(release):
    assert check(release, AGING).violation is None
    for name in ("change-pte-and-age", "age-vs-root-free"):
        assert check(release, name, max_executions=300).violation is None, (release, name)


@pytest.mark.parametrize(("variant", "expected"), [
    (_AgingWithoutStore, "aging-young: clear_flush_young(hva 0x100-0x103) returned 1: root "),
    (_AgingAnswersOld, "aging-young: clear_flush_young(hva 0x100-0x103) returned 0: it "
                       "cleared an Accessed bit but returned old"),
    (_TestAgeAnswersOld, "aging-young: test_young(hva 0x101-0x101) returned 0: it returned "
                         "old while root "),
])
def test_a_wrong_aging_answer_is_reported(variant, expected):
    v = check(variant, AGING).violation
    assert v is not None and v.message.startswith(expected), v and v.message


class _FastZapKeepsObsoletePages(V5_11):
    """kvm_mmu_zap_all_fast without kvm_zap_obsolete_pages: the obsolete legacy
    pages are never zapped."""

    name = "v5.11+fast-zap-keeps-obsolete"

    def kvm_zap_obsolete_pages(self, kvm: Any) -> None:
        pass


@pytest.mark.parametrize("release", RELEASES)
def test_releases_verify_the_legacy_mmu_scenario(release):
    assert check(release, "legacy-roots-vs-memslot-delete", max_executions=300).violation \
        is None


def test_the_legacy_mmu_scenario_catches_a_fast_zap_that_keeps_obsolete_pages():
    # No TDP MMU scenario has legacy pages to zap: the legacy one does.
    assert check(_FastZapKeepsObsoletePages, "zap-range-tlb").violation is None
    assert check(_FastZapKeepsObsoletePages, "legacy-roots-vs-memslot-delete",
                 max_executions=300).violation is not None
