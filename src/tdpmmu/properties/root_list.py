"""No root with ``root_count == 0`` stays on the roots list once ``mmu_lock`` is free.

``kvm_mmu_put_root`` returning true obliges the caller to free the root
before dropping the lock; a zero-count root left on the list is the state
from which the seed's ``BUG_ON(!root_count)`` fires when a vCPU finds it.
"""

from __future__ import annotations

from typing import Any

from ..engine import report
from .peek import peek, roots_on_list


class NoZeroCountRoot:
    name = "no-zero-count-root"

    def __init__(self, kvm: Any) -> None:
        self.kvm = kvm
        self.reported: set[int] = set()

    def check(self) -> None:
        kvm = self.kvm
        if peek(kvm.mmu_lock, "owner") is not None:
            return
        for root in roots_on_list(kvm):
            if peek(root, "root_count") == 0 and id(root) not in self.reported:
                self.reported.add(id(root))
                report("property", f"{self.name}: root {peek(root, 'name')} is on "
                       "tdp_mmu_roots with root_count 0 while mmu_lock is free",
                       "kvm_mmu_put_root")
