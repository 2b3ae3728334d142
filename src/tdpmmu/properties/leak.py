"""No leak at teardown: after the VM is destroyed no page table is still allocated."""

from __future__ import annotations

from typing import Any

from ..kernel import kmemleak_check


def check_no_leak(kvm: Any) -> None:
    """kmemleak after teardown: every object still allocated is a leak."""
    kmemleak_check()
