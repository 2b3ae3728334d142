"""``KVM_MMU_LOCK``/``KVM_MMU_UNLOCK``: take ``kvm->mmu_lock`` exclusively, whatever its type.

Linux 5.12 made x86's ``mmu_lock`` an rwlock ("KVM: x86/mmu: Use an rwlock for
the x86 MMU", 531810caa9f4) and gave generic code these two macros
(``write_lock`` where the architecture defines KVM_HAVE_MMU_RWLOCK, else
``spin_lock``).  The model's v5.10 code takes the lock through them too, so a
version only has to choose the lock's type (see ``V5_12.kvm_mmu_init_vm``)
instead of copying every function that takes it for write.  On a spinlock
they are exactly ``spin_lock``/``spin_unlock``.
"""

from __future__ import annotations

from typing import Any

from ..kernel import rwlock_t, spin_lock, spin_unlock, write_lock, write_unlock


def KVM_MMU_LOCK(kvm: Any) -> None:
    if isinstance(kvm.mmu_lock, rwlock_t):
        write_lock(kvm.mmu_lock)
    else:
        spin_lock(kvm.mmu_lock)


def KVM_MMU_UNLOCK(kvm: Any) -> None:
    if isinstance(kvm.mmu_lock, rwlock_t):
        write_unlock(kvm.mmu_lock)
    else:
        spin_unlock(kvm.mmu_lock)
