"""SPTE bits, paging geometry and the SPTE helpers of ``spte.h``/``spte.c`` (v5.10).

SPTEs are plain ints with the kernel's bit meanings for EPT with A/D bits:
readable (bit 0, the present mask), writable (bit 1), executable (bit 2),
large page (bit 7), accessed (bit 8), dirty (bit 9), the software bits
SPTE_HOST_WRITEABLE (10) and SPTE_MMU_WRITEABLE (11), the pfn at bit 12, and
the special bits 52-53 that mark MMIO SPTEs.

Simplification: a page table has ``PT64_ENT_PER_PAGE`` = 4 entries instead of
512 and the root level defaults to 3, so a guest has 64 GFNs.  The walks,
yields and refcounts under test do not depend on the fan-out; a small one keeps
the number of SPTE writes (each a visible operation) small enough to explore
every interleaving.
"""

from __future__ import annotations

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PT64_LEVEL_BITS = 2
PT64_ENT_PER_PAGE = 1 << PT64_LEVEL_BITS
PT64_ROOT_MAX_LEVEL = 5

PG_LEVEL_4K = 1
PG_LEVEL_2M = 2
KVM_MAX_HUGEPAGE_LEVEL = PG_LEVEL_2M

PT_PRESENT_MASK = 1 << 0  # VMX_EPT_READABLE_MASK, shadow_present_mask
PT_WRITABLE_MASK = 1 << 1
PT_EXEC_MASK = 1 << 2  # shadow_x_mask
PT_PAGE_SIZE_MASK = 1 << 7
shadow_accessed_mask = 1 << 8
shadow_dirty_mask = 1 << 9
SPTE_HOST_WRITEABLE = 1 << 10
SPTE_MMU_WRITEABLE = 1 << 11
PT64_BASE_ADDR_MASK = ((1 << 52) - 1) & ~((1 << PAGE_SHIFT) - 1)

SPTE_SPECIAL_MASK = 3 << 52
SPTE_AD_ENABLED_MASK = 0 << 52
SPTE_AD_DISABLED_MASK = 1 << 52
SPTE_AD_WRPROT_ONLY_MASK = 2 << 52
SPTE_MMIO_MASK = 3 << 52
MMIO_SPTE_GEN_SHIFT = 3  # where the model keeps the memslots generation in an MMIO SPTE
MMIO_SPTE_GEN_MASK = 0x1FF << MMIO_SPTE_GEN_SHIFT

ACC_EXEC_MASK = 1
ACC_WRITE_MASK = PT_WRITABLE_MASK
ACC_USER_MASK = 4
ACC_ALL = ACC_EXEC_MASK | ACC_WRITE_MASK | ACC_USER_MASK

SET_SPTE_WRITE_PROTECTED_PT = 1 << 0
SET_SPTE_NEED_REMOTE_TLB_FLUSH = 1 << 1
SET_SPTE_SPURIOUS = 1 << 2


def KVM_PAGES_PER_HPAGE(level: int) -> int:
    return 1 << ((level - 1) * PT64_LEVEL_BITS)


def SHADOW_PT_INDEX(gfn: int, level: int) -> int:
    return (gfn >> ((level - 1) * PT64_LEVEL_BITS)) & (PT64_ENT_PER_PAGE - 1)


def round_gfn_for_level(gfn: int, level: int) -> int:
    return gfn & ~(KVM_PAGES_PER_HPAGE(level) - 1)


def is_mmio_spte(spte: int) -> bool:
    return (spte & SPTE_SPECIAL_MASK) == SPTE_MMIO_MASK


# 5.12+: the frozen value a thread without exclusive mmu_lock parks an SPTE at
# while it finishes a multi-step change; others must not touch it meanwhile.
# Non-present (a v5.10 SPTE never holds it).
REMOVED_SPTE = 1 << 59


def is_removed_spte(spte: int) -> bool:
    return spte == REMOVED_SPTE


def is_shadow_present_pte(pte: int) -> bool:
    return pte != 0 and not is_mmio_spte(pte) and not is_removed_spte(pte)


def is_large_pte(pte: int) -> bool:
    return bool(pte & PT_PAGE_SIZE_MASK)


def is_last_spte(pte: int, level: int) -> bool:
    return level == PG_LEVEL_4K or is_large_pte(pte)


def is_writable_pte(pte: int) -> bool:
    return bool(pte & PT_WRITABLE_MASK)


def spte_to_pfn(pte: int) -> int:
    return (pte & PT64_BASE_ADDR_MASK) >> PAGE_SHIFT


def spte_ad_enabled(spte: int) -> bool:
    return (spte & SPTE_SPECIAL_MASK) != SPTE_AD_DISABLED_MASK


def spte_ad_need_write_protect(spte: int) -> bool:
    return (spte & SPTE_SPECIAL_MASK) != SPTE_AD_ENABLED_MASK


def is_accessed_spte(spte: int) -> bool:
    """A/D bits are always enabled in the model, so the accessed bit decides."""
    return bool(spte & shadow_accessed_mask)


def is_dirty_spte(spte: int) -> bool:
    return bool(spte & shadow_dirty_mask)


def mark_spte_for_access_track(spte: int) -> int:
    """With A/D bits enabled, access tracking only clears the accessed bit."""
    return spte & ~shadow_accessed_mask


def make_spte(level: int, pfn: int, pte_access: int, speculative: bool, host_writable: bool,
              write_protect: bool) -> tuple[int, int]:
    """Build a leaf SPTE; returns ``(ret, new_spte)`` like ``make_spte()``'s SET_SPTE_* bits.

    ``write_protect`` stands for ``mmu_need_write_protect()`` (a gfn tracked for
    write protection); memory types and NX huge pages are not modelled.
    """
    ret = 0
    spte = PT_PRESENT_MASK | SPTE_AD_ENABLED_MASK
    if not speculative:
        spte |= shadow_accessed_mask
    if pte_access & ACC_EXEC_MASK:
        spte |= PT_EXEC_MASK
    if level > PG_LEVEL_4K:
        spte |= PT_PAGE_SIZE_MASK
    if host_writable:
        spte |= SPTE_HOST_WRITEABLE
    else:
        pte_access &= ~ACC_WRITE_MASK
    spte |= pfn << PAGE_SHIFT
    if pte_access & ACC_WRITE_MASK:
        spte |= PT_WRITABLE_MASK | SPTE_MMU_WRITEABLE
        if write_protect:
            ret |= SET_SPTE_WRITE_PROTECTED_PT
            spte &= ~(PT_WRITABLE_MASK | SPTE_MMU_WRITEABLE)
    if spte & PT_WRITABLE_MASK:
        spte |= shadow_dirty_mask
    if speculative:
        spte = mark_spte_for_access_track(spte)
    return ret, spte


def make_huge_page_split_spte(huge_spte: int, child_level: int, index: int) -> int:
    """``make_huge_page_split_spte`` (6.0+): the ``index``-th child of a huge
    leaf, the same bits for a part of its frames (a 4K child is no longer a
    large page).  The NX-huge-page executable fix-up is not modelled (the
    model has no NX huge pages)."""
    child = huge_spte + ((index * KVM_PAGES_PER_HPAGE(child_level)) << PAGE_SHIFT)
    if child_level == PG_LEVEL_4K:
        child &= ~PT_PAGE_SIZE_MASK
    return child


def make_nonleaf_spte(child_pfn: int) -> int:
    return (child_pfn << PAGE_SHIFT) | PT_PRESENT_MASK | PT_WRITABLE_MASK | PT_EXEC_MASK \
        | shadow_accessed_mask


def make_mmio_spte(gfn: int, generation: int, access: int) -> int:
    """An MMIO SPTE carries the memslots generation it was made in and the gfn."""
    return SPTE_MMIO_MASK | ((generation << MMIO_SPTE_GEN_SHIFT) & MMIO_SPTE_GEN_MASK) \
        | (gfn << PAGE_SHIFT) | (access & ACC_WRITE_MASK)


def get_mmio_spte_generation(spte: int) -> int:
    return (spte & MMIO_SPTE_GEN_MASK) >> MMIO_SPTE_GEN_SHIFT


def kvm_mmu_changed_pte_notifier_make_spte(old_spte: int, new_pfn: int) -> int:
    new_spte = old_spte & ~PT64_BASE_ADDR_MASK
    new_spte |= new_pfn << PAGE_SHIFT
    new_spte &= ~PT_WRITABLE_MASK
    new_spte &= ~SPTE_HOST_WRITEABLE
    return mark_spte_for_access_track(new_spte)


def spte_str(spte: int) -> str:
    """A short human-readable form for traces."""
    if spte == 0:
        return "-"
    if is_mmio_spte(spte):
        return f"mmio(gen={get_mmio_spte_generation(spte)})"
    bits = "".join(c for c, m in (("W", PT_WRITABLE_MASK), ("L", PT_PAGE_SIZE_MASK),
                                   ("A", shadow_accessed_mask), ("D", shadow_dirty_mask))
                   if spte & m)
    return f"pfn={spte_to_pfn(spte):#x}{'/' + bits if bits else ''}"
