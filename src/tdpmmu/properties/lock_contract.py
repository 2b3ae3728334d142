"""Every write to lock-protected state holds its lock (the version's ``lock_contract``).

Installs the kernel version's contract on a fresh VM as guards (see
:mod:`tdpmmu.kernel.guard`): a list head named ``kvm->arch.X`` guards the list
and its nodes; ``kvm_mmu_page.F`` guards field F of every page on those lists;
``kvm->F`` and ``kvm->arch.F`` guard a plain field of the VM.  A write without
the lock is lockdep's WARNING, as if the writer began with
``lockdep_assert_held``.
"""

from __future__ import annotations

from typing import Any

from ..kernel import list_head
from ..kernel.guard import Guard, guard_fields

Contract = dict[str, "tuple[Any, bool] | list[tuple[Any, bool]]"]


def _options(spec: Any) -> list[tuple[Any, bool]]:
    """One ``(lock, exclusive)`` pair, or a list of alternatives."""
    return list(spec) if isinstance(spec, list) else [spec]


def install_lock_contract(kvm: Any, contract: Contract) -> None:
    page_fields = {name.split(".", 1)[1]: Guard(_options(spec), name)
                   for name, spec in contract.items() if name.startswith("kvm_mmu_page.")}
    for name, spec in contract.items():
        if name.startswith("kvm_mmu_page."):
            continue
        if name.startswith("kvm->arch."):
            owner, attr = kvm.arch, name[len("kvm->arch."):]
        elif name.startswith("kvm->"):
            owner, attr = kvm, name[len("kvm->"):]
        else:
            raise ValueError(f"lock_contract: cannot place {name!r}")
        value = getattr(owner, attr)
        if isinstance(value, list_head):
            value.guard = Guard(_options(spec), name, page_fields)
        else:
            guard_fields(owner, {attr: Guard(_options(spec), name)})
