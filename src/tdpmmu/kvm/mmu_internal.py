"""``mmu_internal.h`` at v5.10: taking and dropping references on a root.

``root_count`` is a plain int protected by ``mmu_lock``.  A root may only gain
a reference while it still has one: ``kvm_mmu_get_root`` BUGs otherwise, and
that BUG is the one the seed thread reports.  ``kvm_mmu_put_root`` only says
whether the count reached zero; freeing is the caller's job.
"""

from __future__ import annotations

from typing import Any

from ..kernel import BUG_ON, lockdep_assert_held
from . import shared
from .structs import kvm_mmu_page

__kernel_file__ = "arch/x86/kvm/mmu/mmu_internal.h"


class MmuInternal:
    """``mmu_internal.h``: the root reference helpers."""

    def kvm_mmu_get_root(self, kvm: Any, sp: kvm_mmu_page) -> None:
        BUG_ON(not sp.root_count)
        lockdep_assert_held(kvm.mmu_lock)
        sp.root_count += 1
        shared.note(f"get {sp.name} -> {sp.root_count}", who=1)

    def kvm_mmu_put_root(self, kvm: Any, sp: kvm_mmu_page) -> bool:
        lockdep_assert_held(kvm.mmu_lock)
        sp.root_count -= 1
        shared.note(f"put {sp.name} -> {sp.root_count}", who=1)
        return not sp.root_count
