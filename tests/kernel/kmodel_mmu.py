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
