"""spte.py: the SPTE bit helpers of spte.h/spte.c."""

from __future__ import annotations

import pytest

from tdpmmu.kvm.spte import (
    ACC_ALL,
    ACC_EXEC_MASK,
    ACC_WRITE_MASK,
    PG_LEVEL_2M,
    PG_LEVEL_4K,
    PT_PAGE_SIZE_MASK,
    PT_PRESENT_MASK,
    PT_WRITABLE_MASK,
    SET_SPTE_WRITE_PROTECTED_PT,
    SPTE_HOST_WRITEABLE,
    SPTE_MMU_WRITEABLE,
    get_mmio_spte_generation,
    is_accessed_spte,
    is_dirty_spte,
    is_large_pte,
    is_last_spte,
    is_mmio_spte,
    is_shadow_present_pte,
    is_writable_pte,
    kvm_mmu_changed_pte_notifier_make_spte,
    make_mmio_spte,
    make_nonleaf_spte,
    make_spte,
    spte_to_pfn,
)


def leaf(level: int = PG_LEVEL_4K, pfn: int = 0x123, access: int = ACC_ALL,
         speculative: bool = False, host_writable: bool = True,
         write_protect: bool = False) -> tuple[int, int]:
    return make_spte(level, pfn, access, speculative, host_writable, write_protect)


def test_writable_map_is_present_writable_dirty_accessed():
    ret, spte = leaf()
    assert ret == 0
    assert spte & PT_PRESENT_MASK
    assert is_shadow_present_pte(spte)
    assert is_writable_pte(spte)
    assert spte & SPTE_MMU_WRITEABLE and spte & SPTE_HOST_WRITEABLE
    assert is_dirty_spte(spte)
    assert is_accessed_spte(spte)
    assert not is_large_pte(spte)
    assert not is_mmio_spte(spte)


def test_read_only_host_page_maps_read_only_and_clean():
    _, spte = leaf(host_writable=False)
    assert is_shadow_present_pte(spte)
    assert not is_writable_pte(spte)
    assert not spte & (SPTE_HOST_WRITEABLE | SPTE_MMU_WRITEABLE)
    assert not is_dirty_spte(spte)


def test_no_write_access_maps_read_only():
    _, spte = leaf(access=ACC_ALL & ~ACC_WRITE_MASK)
    assert not is_writable_pte(spte) and not is_dirty_spte(spte)
    assert spte & SPTE_HOST_WRITEABLE


def test_write_protected_gfn_reports_it_and_drops_writable():
    ret, spte = leaf(write_protect=True)
    assert ret & SET_SPTE_WRITE_PROTECTED_PT
    assert not is_writable_pte(spte)
    assert not spte & SPTE_MMU_WRITEABLE
    assert not is_dirty_spte(spte)


def test_speculative_map_is_not_accessed():
    _, spte = leaf(speculative=True)
    assert is_shadow_present_pte(spte) and not is_accessed_spte(spte)


def test_exec_bit_follows_access():
    _, x = leaf(access=ACC_ALL)
    _, nx = leaf(access=ACC_ALL & ~ACC_EXEC_MASK)
    assert x != nx and x & ~nx  # only the exec bit differs
    assert bin(x ^ nx).count("1") == 1


def test_large_bit_at_level_2_only():
    _, small = leaf(level=PG_LEVEL_4K)
    _, large = leaf(level=PG_LEVEL_2M)
    assert not small & PT_PAGE_SIZE_MASK
    assert large & PT_PAGE_SIZE_MASK and is_large_pte(large)


@pytest.mark.parametrize("pfn", [0, 1, 0x100, 0x8000, 0xABCDE, (1 << 40) - 1])
@pytest.mark.parametrize("level", [PG_LEVEL_4K, PG_LEVEL_2M])
def test_pfn_round_trip(pfn, level):
    _, spte = leaf(level=level, pfn=pfn)
    assert spte_to_pfn(spte) == pfn
    assert spte_to_pfn(make_nonleaf_spte(pfn)) == pfn


def test_is_last_spte():
    _, small = leaf(level=PG_LEVEL_4K)
    _, large = leaf(level=PG_LEVEL_2M)
    nonleaf = make_nonleaf_spte(0x8001)
    assert is_last_spte(small, PG_LEVEL_4K)
    assert is_last_spte(large, PG_LEVEL_2M)
    assert not is_last_spte(nonleaf, PG_LEVEL_2M)
    assert not is_last_spte(nonleaf, 3)
    # Every SPTE at level 1 is a leaf, whatever its bits.
    assert is_last_spte(nonleaf, PG_LEVEL_4K)


def test_nonleaf_spte_is_present_and_not_large():
    spte = make_nonleaf_spte(0x8001)
    assert is_shadow_present_pte(spte)
    assert not is_large_pte(spte)
    assert not is_mmio_spte(spte)


@pytest.mark.parametrize("gen", [0, 1, 7, 0x1FF])
def test_mmio_spte_is_not_present_and_carries_generation(gen):
    spte = make_mmio_spte(0x9, gen, ACC_ALL)
    assert spte != 0
    assert is_mmio_spte(spte)
    assert not is_shadow_present_pte(spte)
    assert get_mmio_spte_generation(spte) == gen


def test_mmio_generations_differ():
    assert make_mmio_spte(0x9, 1, ACC_ALL) != make_mmio_spte(0x9, 2, ACC_ALL)


def test_zero_is_not_present():
    assert not is_shadow_present_pte(0)
    assert not is_mmio_spte(0)


def test_change_pte_notifier_drops_writable_and_moves_pfn():
    _, old = leaf(pfn=0x123)
    new = kvm_mmu_changed_pte_notifier_make_spte(old, 0x456)
    assert spte_to_pfn(new) == 0x456
    assert is_shadow_present_pte(new)
    assert not is_writable_pte(new)
    assert not new & SPTE_HOST_WRITEABLE
    assert not is_accessed_spte(new)  # marked for access tracking
    assert is_large_pte(new) == is_large_pte(old)
    assert not new & PT_WRITABLE_MASK
