"""``tdp_iter.c`` at v5.10: a pre-order walk over one root's paging structure.

The iterator reads SPTEs with plain loads: every writer holds ``mmu_lock``
(exclusive at v5.10) and so does every walker, so these reads need no
scheduling point.  From 5.12 ``mmu_lock`` is an rwlock and walkers under the
read lock (or under RCU alone) race with other threads' cmpxchg'es: their
``READ_ONCE(*rcu_dereference(sptep))`` is then a visible read
(:func:`read_spte`); a walker holding the lock for write still reads plainly.
With PML the CPU writes dirty bits into SPTEs under any lock, so a walker of
a PML VM reads visibly even under the exclusive lock (see :mod:`.vmx`).
Without PML the CPU also sets the dirty bit of a leaf that 5.10-5.12's aging
cleared; there the walker's plain read is kept (a simplification: the order
of such a read and the bit's set changes nothing but the bit itself, which
no VM without PML reads).

After a yield the walk restarts from the root towards
``max(goal_gfn, gfn)`` (``tdp_iter_refresh_walk``), which is why the root must
stay alive while the lock is dropped.
"""

from __future__ import annotations

from typing import Any

from ..engine import current_thread
from ..kernel import WARN_ON, rwlock_t
from ..kernel.lockdep import debug_locks, rcu_read_lock_nesting
from ..kernel.rcu import rcu_lockdep_warn
from . import shared
from .spte import (
    KVM_PAGES_PER_HPAGE,
    PT64_ROOT_MAX_LEVEL,
    SHADOW_PT_INDEX,
    is_last_spte,
    is_shadow_present_pte,
    round_gfn_for_level,
    spte_to_pfn,
)

__kernel_file__ = "arch/x86/kvm/mmu/tdp_iter.c"


class tdp_iter:
    """``struct tdp_iter``: ``sptep`` is modelled as (page, index)."""

    __slots__ = ("kvm", "goal_gfn", "pt_path", "sp", "index", "gfn", "root_level",
                 "min_level", "level", "old_spte", "valid", "yielded_at", "yielded_gfn",
                 "yielded")

    def __init__(self, kvm: Any) -> None:
        self.kvm = kvm
        self.goal_gfn = 0
        self.pt_path: list[Any] = [None] * PT64_ROOT_MAX_LEVEL
        self.sp: Any = None
        self.index = 0
        self.gfn = 0
        self.root_level = 0
        self.min_level = 1
        self.level = 0
        self.old_spte = 0
        self.valid = False
        self.yielded_at: int | None = None  # model only: goal_gfn at the last yield
        self.yielded_gfn = 0  # 5.12+: next_last_level_gfn when the walk last (re)started
        self.yielded = False  # 5.16+ (3a0f64de479c): restart at the next tdp_iter_next

    @property
    def next_last_level_gfn(self) -> int:
        """5.12's name for ``goal_gfn`` (74953d353028 renamed it)."""
        return self.goal_gfn

    @property
    def sptep(self) -> tuple[Any, int]:
        return (self.sp, self.index)


def spte_to_child_pt(kvm: Any, spte: int, level: int) -> Any:
    """The child page table an SPTE points to, or None for a leaf / non-present SPTE."""
    if not is_shadow_present_pte(spte) or is_last_spte(spte, level):
        return None
    return to_shadow_page(kvm, spte_to_pfn(spte))


def to_shadow_page(kvm: Any, pfn: int) -> Any:
    """``page_private(pfn_to_page(pfn))``: the kvm_mmu_page of a page-table page."""
    return kvm.phys.get(pfn)


def read_spte(kvm: Any, sp: Any, index: int) -> int:
    """``READ_ONCE(*rcu_dereference(sptep))``: plain while this thread holds
    ``mmu_lock`` exclusively (nobody else writes SPTEs then), a visible read of
    the root otherwise (5.12+, where writers under the read lock race).

    From 5.12 (7cca2d0b7e7d, which made ``mmu_lock`` an rwlock's companion:
    page tables freed through RCU) the load is an ``rcu_dereference``, and
    with ``CONFIG_PROVE_RCU`` (lockdep, which KVM developers test with) a walk
    outside ``rcu_read_lock()`` is a "suspicious RCU usage" splat even under
    the write lock: holding ``mmu_lock`` does not keep a page table that an
    earlier read-locked zap queued for freeing alive.  The rwlock is the
    model's mark of that era (both came in 5.12)."""
    lock = kvm.mmu_lock
    rcu_era = isinstance(lock, rwlock_t)
    pml = kvm.enable_pml  # the CPU sets dirty bits whatever KVM holds (see vmx.py)
    if pml or rcu_era:
        t = current_thread()
        if t is not None:
            if rcu_era and not rcu_read_lock_nesting(t) and debug_locks():
                rcu_lockdep_warn("suspicious rcu_dereference_check() usage!")
            if pml or lock.writer is not t:
                return shared.read_spte(sp, index)
    return sp.spt[index]


def tdp_iter_refresh_sptep(it: tdp_iter) -> None:
    it.sp = it.pt_path[it.level - 1]
    it.index = SHADOW_PT_INDEX(it.gfn, it.level)
    it.old_spte = read_spte(it.kvm, it.sp, it.index)


def tdp_iter_start(it: tdp_iter, root_pt: Any, root_level: int, min_level: int,
                   goal_gfn: int) -> None:
    WARN_ON(root_level < 1)
    WARN_ON(root_level > PT64_ROOT_MAX_LEVEL)
    it.goal_gfn = goal_gfn
    it.root_level = root_level
    it.min_level = min_level
    it.level = root_level
    it.pt_path[it.level - 1] = root_pt
    it.gfn = round_gfn_for_level(it.goal_gfn, it.level)
    tdp_iter_refresh_sptep(it)
    it.valid = True
    it.yielded = False
    it.yielded_gfn = it.goal_gfn


def tdp_iter_restart(it: tdp_iter) -> None:
    """5.12's restart after a yield: from the root towards next_last_level_gfn,
    remembering where it yielded (the forward-progress check reads it)."""
    it.yielded = False
    it.yielded_gfn = it.goal_gfn
    it.level = it.root_level
    it.gfn = round_gfn_for_level(it.goal_gfn, it.level)
    tdp_iter_refresh_sptep(it)
    it.valid = True


def try_step_down(it: tdp_iter) -> bool:
    if it.level == it.min_level:
        return False
    # Re-read the SPTE: the caller may have just zapped it.
    it.old_spte = read_spte(it.kvm, it.sp, it.index)
    child = spte_to_child_pt(it.kvm, it.old_spte, it.level)
    if child is None:
        return False
    it.level -= 1
    it.pt_path[it.level - 1] = child
    it.gfn = round_gfn_for_level(it.goal_gfn, it.level)
    tdp_iter_refresh_sptep(it)
    return True


def try_step_side(it: tdp_iter) -> bool:
    if SHADOW_PT_INDEX(it.gfn, it.level) == SHADOW_PT_INDEX(-1, it.level):
        return False  # the last entry of this page table
    it.gfn += KVM_PAGES_PER_HPAGE(it.level)
    it.goal_gfn = it.gfn
    it.index += 1
    it.old_spte = read_spte(it.kvm, it.sp, it.index)
    return True


def try_step_up(it: tdp_iter) -> bool:
    if it.level == it.root_level:
        return False
    it.level += 1
    it.gfn = round_gfn_for_level(it.gfn, it.level)
    tdp_iter_refresh_sptep(it)
    return True


def tdp_iter_next(it: tdp_iter) -> None:
    # 3a0f64de479c (5.16): a walk that yielded restarts here instead of advancing
    # past the SPTE it restarted on (before it, nothing sets ``yielded``).
    if it.yielded:
        tdp_iter_restart(it)
        return
    if try_step_down(it):
        return
    while True:
        if try_step_side(it):
            return
        if not try_step_up(it):
            break
    it.valid = False


def tdp_iter_refresh_walk(it: tdp_iter) -> None:
    """Restart the walk from the root after the lock was dropped."""
    goal_gfn = it.goal_gfn
    if it.gfn > goal_gfn:
        goal_gfn = it.gfn
    tdp_iter_start(it, it.pt_path[it.root_level - 1], it.root_level, it.min_level, goal_gfn)


def tdp_iter_root_pt(it: tdp_iter) -> Any:
    return it.pt_path[it.root_level - 1]


def for_each_tdp_pte_min_level(it: tdp_iter, root_pt: Any, root_level: int, min_level: int,
                               start: int, end: int):
    """The ``for_each_tdp_pte_min_level`` loop: yields the iterator at each SPTE."""
    tdp_iter_start(it, root_pt, root_level, min_level, start)
    while it.valid and it.gfn < end:
        yield it
        tdp_iter_next(it)


def for_each_tdp_pte(it: tdp_iter, root_pt: Any, root_level: int, start: int, end: int):
    return for_each_tdp_pte_min_level(it, root_pt, root_level, 1, start, end)
