"""tdp_iter.py: the pre-order walk over a hand-built paging structure.

Geometry (spte.py): 4 entries per page, root level 3, so a root covers 64
gfns, a level-3 entry 16, a level-2 entry 4 and a level-1 entry 1.

The structure built here::

    root (L3)   [0] -> A     [1] 0        [2] -> B     [3] mmio
    A (L2)      [0] -> C     [1] 2M leaf  [2] 0        [3] 0
    C (L1)      [0] 0        [1] leaf     [2] leaf     [3] 0
    B (L2)      [0] 0        [1] 0        [2] 0        [3] -> D
    D (L1)      [0] leaf     [1] 0        [2] 0        [3] leaf
"""

from __future__ import annotations

import pytest

from tdpmmu.kvm.spte import (
    ACC_ALL,
    make_mmio_spte,
    make_nonleaf_spte,
    make_spte,
)
from tdpmmu.kvm.structs import kvm, kvm_mmu_page, kvm_mmu_page_role
from tdpmmu.kvm.tdp_iter import (
    for_each_tdp_pte,
    for_each_tdp_pte_min_level,
    spte_to_child_pt,
    tdp_iter,
    tdp_iter_next,
    tdp_iter_refresh_walk,
    tdp_iter_root_pt,
    tdp_iter_start,
)


class Paging:
    def __init__(self) -> None:
        self.kvm = kvm(1, 3)
        self.root = self.page(3)
        self.a = self.page(2)
        self.b = self.page(2)
        self.c = self.page(1)
        self.d = self.page(1)
        self.link(self.root, 0, self.a)
        self.link(self.root, 2, self.b)
        self.root.spt[3] = make_mmio_spte(48, 0, ACC_ALL)
        self.link(self.a, 0, self.c)
        self.a.spt[1] = make_spte(2, 0x204, ACC_ALL, False, True, False)[1]
        self.c.spt[1] = make_spte(1, 0x301, ACC_ALL, False, True, False)[1]
        self.c.spt[2] = make_spte(1, 0x302, ACC_ALL, False, True, False)[1]
        self.link(self.b, 3, self.d)
        self.d.spt[0] = make_spte(1, 0x32C, ACC_ALL, False, True, False)[1]
        self.d.spt[3] = make_spte(1, 0x32F, ACC_ALL, False, True, False)[1]

    def page(self, level: int) -> kvm_mmu_page:
        sp = kvm_mmu_page()
        sp.pfn = self.kvm.next_pt_pfn
        self.kvm.next_pt_pfn += 1
        self.kvm.phys[sp.pfn] = sp
        sp.role = kvm_mmu_page_role(level=level)
        sp.tdp_mmu_page = True
        sp.name = f"pt{sp.pfn:#x}"
        return sp

    @staticmethod
    def link(parent: kvm_mmu_page, index: int, child: kvm_mmu_page) -> None:
        parent.spt[index] = make_nonleaf_spte(child.pfn)

    def walk(self, start: int = 0, end: int = 64, min_level: int = 1) -> list[tuple[int, int]]:
        it = tdp_iter(self.kvm)
        return [(i.gfn, i.level) for i in
                for_each_tdp_pte_min_level(it, self.root, 3, min_level, start, end)]


# The whole walk, in pre-order.
FULL = [
    (0, 3),
    (0, 2), (0, 1), (1, 1), (2, 1), (3, 1),
    (4, 2), (8, 2), (12, 2),
    (16, 3),
    (32, 3),
    (32, 2), (36, 2), (40, 2), (44, 2), (44, 1), (45, 1), (46, 1), (47, 1),
    (48, 3),
]


@pytest.fixture
def pg() -> Paging:
    return Paging()


def test_full_walk_is_preorder(pg):
    assert pg.walk() == FULL


def test_for_each_tdp_pte_is_min_level_1(pg):
    it = tdp_iter(pg.kvm)
    assert [(i.gfn, i.level) for i in for_each_tdp_pte(it, pg.root, 3, 0, 64)] == FULL


def test_old_spte_and_sptep_match_the_entry(pg):
    it = tdp_iter(pg.kvm)
    for i in for_each_tdp_pte(it, pg.root, 3, 0, 64):
        sp, index = i.sptep
        assert i.old_spte == sp.spt[index]
        assert sp.role.level == i.level
        assert tdp_iter_root_pt(i) is pg.root
    seen = {(i.gfn, i.level): i.old_spte for i in for_each_tdp_pte(tdp_iter(pg.kvm), pg.root,
                                                                   3, 0, 64)}
    assert seen[(1, 1)] == pg.c.spt[1]
    assert seen[(4, 2)] == pg.a.spt[1]
    assert seen[(47, 1)] == pg.d.spt[3]


def test_non_present_and_leaf_and_mmio_entries_are_not_descended(pg):
    walked = pg.walk()
    # (16, 3) is zero, (4, 2) a 2M leaf, (48, 3) an MMIO SPTE: nothing below them.
    assert not [e for e in walked if 16 < e[0] < 32]
    assert not [e for e in walked if 4 <= e[0] < 8 and e[1] < 2]
    assert walked[-1] == (48, 3)
    assert spte_to_child_pt(pg.kvm, pg.root.spt[1], 3) is None
    assert spte_to_child_pt(pg.kvm, pg.root.spt[3], 3) is None
    assert spte_to_child_pt(pg.kvm, pg.a.spt[1], 2) is None
    assert spte_to_child_pt(pg.kvm, pg.root.spt[0], 3) is pg.a


def test_range_walk_starts_at_start_and_stops_before_end(pg):
    # The walk steps down towards goal_gfn 5: from (0, 3) straight to (4, 2),
    # a 2M leaf covering gfns 4-7, then sideways; (0, 2) and C are skipped.
    assert pg.walk(5, 10) == [(0, 3), (4, 2), (8, 2)]
    assert pg.walk(1, 3) == [(0, 3), (0, 2), (1, 1), (2, 1)]
    assert pg.walk(45, 47) == [(32, 3), (44, 2), (45, 1), (46, 1)]


def test_range_walk_of_one_gfn_reaches_its_leaf(pg):
    assert pg.walk(2, 3) == [(0, 3), (0, 2), (2, 1)]
    assert pg.walk(33, 34) == [(32, 3), (32, 2)]  # B[0] is empty


def test_min_level_stops_above_it(pg):
    assert pg.walk(min_level=2) == [e for e in FULL if e[1] >= 2]
    assert pg.walk(min_level=3) == [(0, 3), (16, 3), (32, 3), (48, 3)]


def test_walk_rereads_the_spte_before_stepping_down(pg):
    """try_step_down re-reads the SPTE: a zap by the caller stops the descent."""
    it = tdp_iter(pg.kvm)
    out = []
    for i in for_each_tdp_pte(it, pg.root, 3, 0, 64):
        out.append((i.gfn, i.level))
        if (i.gfn, i.level) == (0, 2):
            pg.a.spt[0] = 0  # unlink C while the iterator stands on its entry
    assert (0, 1) not in out and (4, 2) in out


def _advance_to(it: tdp_iter, target: tuple[int, int]) -> None:
    while (it.gfn, it.level) != target:
        assert it.valid
        tdp_iter_next(it)


def test_refresh_walk_restarts_from_root_towards_gfn(pg):
    it = tdp_iter(pg.kvm)
    tdp_iter_start(it, pg.root, 3, 1, 0)
    _advance_to(it, (45, 1))
    tdp_iter_refresh_walk(it)
    # Back at the root, at the level-3 entry covering gfn 45.
    assert (it.gfn, it.level) == (32, 3)
    assert it.sp is pg.root and it.index == 2
    assert it.valid
    rest = []
    while it.valid and it.gfn < 64:
        rest.append((it.gfn, it.level))
        tdp_iter_next(it)
    assert rest == [(32, 3), (44, 2), (45, 1), (46, 1), (47, 1), (48, 3)]


def test_refresh_walk_sees_changes_made_while_the_lock_was_dropped(pg):
    it = tdp_iter(pg.kvm)
    tdp_iter_start(it, pg.root, 3, 1, 0)
    _advance_to(it, (1, 1))
    pg.a.spt[0] = 0  # C is unlinked while "yielded"
    tdp_iter_refresh_walk(it)
    rest = []
    while it.valid:
        rest.append((it.gfn, it.level))
        tdp_iter_next(it)
    assert rest[:3] == [(0, 3), (0, 2), (4, 2)]


def test_refresh_walk_uses_gfn_when_it_is_past_goal(pg):
    it = tdp_iter(pg.kvm)
    tdp_iter_start(it, pg.root, 3, 1, 0)
    _advance_to(it, (2, 1))
    # goal_gfn behind gfn: the restart goes towards gfn, never backwards.
    it.goal_gfn = 0
    it.gfn = 45
    tdp_iter_refresh_walk(it)
    assert it.goal_gfn == 45
    assert (it.gfn, it.level) == (32, 3)
    tdp_iter_next(it)
    tdp_iter_next(it)
    assert (it.gfn, it.level) == (45, 1)


def test_refresh_walk_keeps_goal_when_it_is_ahead(pg):
    it = tdp_iter(pg.kvm)
    tdp_iter_start(it, pg.root, 3, 1, 0)
    _advance_to(it, (44, 2))
    it.goal_gfn = 46  # goal ahead of gfn: the restart goes towards the goal
    tdp_iter_refresh_walk(it)
    assert it.goal_gfn == 46
    assert (it.gfn, it.level) == (32, 3)
    tdp_iter_next(it)
    tdp_iter_next(it)
    assert (it.gfn, it.level) == (46, 1)


def test_refresh_walk_keeps_min_level(pg):
    it = tdp_iter(pg.kvm)
    tdp_iter_start(it, pg.root, 3, 2, 0)
    _advance_to(it, (44, 2))
    tdp_iter_refresh_walk(it)
    assert it.min_level == 2
    rest = []
    while it.valid:
        rest.append((it.gfn, it.level))
        tdp_iter_next(it)
    assert rest == [(32, 3), (44, 2), (48, 3)]


def test_walk_ends_invalid_after_the_last_root_entry(pg):
    it = tdp_iter(pg.kvm)
    tdp_iter_start(it, pg.root, 3, 1, 48)
    assert (it.gfn, it.level) == (48, 3)
    tdp_iter_next(it)
    assert not it.valid


def test_root_level_2_walk():
    pg = Paging()
    small = pg.page(2)
    leaf_pt = pg.page(1)
    Paging.link(small, 1, leaf_pt)
    leaf_pt.spt[3] = make_spte(1, 0x7, ACC_ALL, False, True, False)[1]
    it = tdp_iter(pg.kvm)
    assert [(i.gfn, i.level) for i in for_each_tdp_pte(it, small, 2, 0, 16)] == [
        (0, 2), (4, 2), (4, 1), (5, 1), (6, 1), (7, 1), (8, 2), (12, 2)]
