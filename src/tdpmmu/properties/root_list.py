"""No root with ``root_count == 0`` stays on the roots list once ``mmu_lock`` is free.

The 5.10-5.12 rule, for roots counted with a plain ``int root_count``:
``kvm_mmu_put_root`` (5.10 ``mmu_internal.h``) returning true obliges the
caller to free the root before dropping the lock; a zero-count root left on
the list is the state from which the seed's ``BUG_ON(!root_count)`` in
``kvm_mmu_get_root`` fires when a vCPU finds it.  From 5.13 roots count with
a ``refcount_t`` (``tdp_mmu_root_count``), whose get refuses 0, and a root at
0 may stay listed while its put, under the read lock, finishes: the rule is
applied by the count's type, which is the version's data structure.  The
later promise, 5.18's WARN that a *writer* never sees a zero-count root, is
``properties.root_lifecycle.NoZeroCountRootUnderWriteLock``.
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

    def check(self) -> tuple[Any, ...]:
        """Check now; return the access objects a change of the outcome needs a step on.

        The list and the counts change under ``mmu_lock`` (or, for RCU list
        writers and atomic counts, by visible operations on the list heads
        and the counters), so a step that touches none of them cannot change
        what this check sees.
        """
        kvm = self.kvm
        lock = kvm.mmu_lock
        if peek(lock, "owner") is not None:
            return (lock,)
        head = kvm.arch.tdp_mmu_roots
        watch: list[Any] = [lock, head]
        for root in roots_on_list(kvm):
            # From 5.13 roots count with a refcount_t (tdp_mmu_root_count) and a
            # root at 0 may stay listed while its put finishes: get refuses it,
            # so the 5.10 rule does not apply to such roots.
            if peek(root, "tdp_mmu_root_count") is not None:
                continue
            count = peek(root, "root_count")
            node = peek(root, "link")
            if node is not None:
                watch.append(node)
            if not isinstance(count, int):
                watch.append(count)
            if count == 0 and id(root) not in self.reported:
                self.reported.add(id(root))
                report("property", f"{self.name}: root {peek(root, 'name')} is on "
                       "tdp_mmu_roots with root_count 0 while mmu_lock is free",
                       "kvm_mmu_put_root")
        return tuple(watch)


class OneValidRootPerRole:
    """A lookup that finds a usable root uses it rather than allocating a
    duplicate: at no time are two valid roots of one role on ``tdp_mmu_roots``.

    Promised by 6.9's ``kvm_tdp_mmu_alloc_root``, which looks for a root under
    ``mmu_lock`` for read and then rechecks under ``tdp_mmu_pages_lock``
    before ``list_add_rcu`` because "another vCPU may have raced ahead and
    created a new usable root".  Checked only on a version that says it makes
    that promise (``promises_one_valid_root_per_role`` on the kernel class):
    earlier versions look up and add under the write lock, and a what-if that
    drops the recheck is what this catches.
    """

    name = "one-valid-root-per-role"

    def __init__(self, kvm: Any) -> None:
        self.kvm = kvm
        self.reported: set[int] = set()

    def check(self) -> None:
        seen: dict[Any, Any] = {}
        for root in roots_on_list(self.kvm):
            invalid = peek(root, "role_invalid")
            if getattr(invalid, "value", invalid):
                continue
            role = peek(root, "role")
            if role is None or role.invalid:
                continue
            first = seen.setdefault(role.word, root)
            if first is root or id(root) in self.reported:
                continue
            self.reported.add(id(root))
            report("property", f"{self.name}: roots {peek(first, 'name')} and "
                   f"{peek(root, 'name')} are both valid with role {role} on tdp_mmu_roots "
                   "(a usable root was not reused)", "kvm_tdp_mmu_alloc_root")
