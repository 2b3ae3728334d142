"""A tiny model module standing for a kernel source file (used by test_bug.py)."""

from tdpmmu.kernel import BUG_ON, WARN, WARN_ON, WARN_ON_ONCE

__kernel_file__ = "arch/x86/kvm/mmu/mmu_internal.h"


def kvm_mmu_get_root(count: int) -> int:
    BUG_ON(not count)
    return count + 1


def check_root(count: int) -> bool:
    return WARN_ON(count < 0)


def check_root_once(count: int) -> bool:
    return WARN_ON_ONCE(count < 0)


def check_root_msg(count: int) -> bool:
    return WARN(count < 0, "bad root_count %d\n", count)


# Functions of this module that live in other kernel files (as a version module's
# mmu.c overrides sit beside its tdp_mmu.c ones).
__kernel_files__ = {"kvm_mmu_zap_all_fast": ("arch/x86/kvm/mmu/mmu.c",),
                    "kvm_mmu_get_root": ("arch/x86/kvm/mmu/mmu_internal.h",
                                         "arch/x86/kvm/mmu/mmu.c")}


def kvm_mmu_zap_all_fast(count: int) -> bool:
    return WARN_ON(count < 0)
