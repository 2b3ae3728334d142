"""An invalidation over several memslots owes the flush any one of them asks for."""

from __future__ import annotations

from typing import Any

import pytest

from tdpmmu.checker import check
from tdpmmu.kvm.v5_13 import KVM_ADDRESS_SPACE_NUM, kvm_gfn_range
from tdpmmu.kvm.versions import V5_13

SCENARIO = "invalidate-across-memslots"


class _GenericWalkKeepsLastSlot(V5_13):
    """5.13's ``__kvm_handle_hva_range`` with ``ret =`` for ``ret |=``: only the
    last memslot's "flush needed" reaches invalidate_range_start."""

    name = "v5.13+hva-range-ret-assign"

    def _kvm_handle_hva_range(self, kvm: Any, start: int, end: int, handler: Any,
                              pte: Any = None, may_block: bool = False) -> bool:
        ret = False
        for as_id in range(KVM_ADDRESS_SPACE_NUM):
            for slot in self._kvm_memslots(kvm, as_id).slots:
                hva_start = max(start, slot.userspace_addr)
                hva_end = min(end, slot.userspace_addr + slot.npages)
                if hva_start >= hva_end:
                    continue
                gfn_range = kvm_gfn_range(
                    slot=slot, start=slot.base_gfn + (hva_start - slot.userspace_addr),
                    end=slot.base_gfn + (hva_end - slot.userspace_addr), pte=pte,
                    may_block=may_block)
                ret = bool(handler(kvm, gfn_range))
        return ret


def test_a_flush_lost_across_memslots_is_reported() -> None:
    v = check(_GenericWalkKeepsLastSlot, SCENARIO).violation
    assert v is not None and v.message.startswith("tlb-coherence:"), v and v.message
    assert "gfn 0x3" in v.message


@pytest.mark.parametrize("release", ["v5.11", "v5.12", "v5.13", "v5.18", "v6.9"])
@pytest.mark.parametrize("tdp_mmu", [0, 1])
def test_releases_verify_an_invalidation_across_memslots(release: str, tdp_mmu: int) -> None:
    r = check(release, SCENARIO, knobs={"tdp_mmu": str(tdp_mmu)})
    assert r.violation is None and r.result.complete
