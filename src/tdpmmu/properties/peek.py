"""Reading model objects from a property without tripping KASAN.

A property looks at memory the way a debugger does: a freed object is shown,
not reported (the kernel's own access to it is what KASAN reports).
"""

from __future__ import annotations

from typing import Any


def peek(obj: Any, attr: str, default: Any = None) -> Any:
    try:
        return object.__getattribute__(obj, attr)
    except AttributeError:
        return default


def roots_on_list(kvm: Any) -> list[Any]:
    """The roots on ``kvm->arch.tdp_mmu_roots``, in list order (stops at poison)."""
    head = kvm.arch.tdp_mmu_roots
    out = []
    node = peek(head, "next")
    seen = 0
    while node is not head and not isinstance(node, int) and node is not None and seen < 64:
        owner = peek(node, "owner")
        out.append(owner)
        node = peek(node, "next")
        seen += 1
    return out
