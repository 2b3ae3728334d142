"""list_head: operations, poisoning, CONFIG_DEBUG_LIST, walks that race with deletion."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tdpmmu.engine import Finding, explore
from tdpmmu.kernel import (
    LIST_HEAD,
    LIST_POISON1,
    LIST_POISON2,
    cond_resched_lock,
    container_of,
    kfree,
    kmalloc,
    list_add,
    list_add_rcu,
    list_add_tail,
    list_del,
    list_del_init,
    list_del_rcu,
    list_empty,
    list_first_entry,
    list_for_each_entry,
    list_for_each_entry_rcu,
    list_for_each_entry_safe,
    list_head,
    list_next_entry,
    lockdep_is_held,
    rcu_read_lock,
    rcu_read_unlock,
    spin_lock,
    spin_unlock,
    spinlock_t,
    synchronize_rcu,
)


class root:
    def __init__(self, n: int) -> None:
        self.n = n
        self.link = list_head(self)


def make(ns: list[int], tail: bool = True) -> tuple[list_head, list[root]]:
    head = LIST_HEAD("tdp_mmu_roots")
    roots = [root(n) for n in ns]
    for r in roots:
        (list_add_tail if tail else list_add)(r.link, head)
    return head, roots


def values(head: list_head) -> list[int]:
    return [r.n for r in list_for_each_entry(head)]


def test_add_del_and_poison() -> None:
    head, roots = make([1, 2, 3])
    assert values(head) == [1, 2, 3]
    head2, _ = make([1, 2, 3], tail=False)
    assert values(head2) == [3, 2, 1]
    assert list_first_entry(head) is roots[0]
    assert list_next_entry(roots[0], "link") is roots[1]
    assert container_of(roots[2].link) is roots[2]
    list_del(roots[1].link)
    assert values(head) == [1, 3]
    assert roots[1].link.next == LIST_POISON1 and roots[1].link.prev == LIST_POISON2
    assert not list_empty(roots[1].link)
    list_del_init(roots[0].link)
    assert list_empty(roots[0].link)
    list_del(roots[2].link)
    assert list_empty(head)


def test_safe_walk_allows_deleting_current() -> None:
    head, _ = make([1, 2, 3])
    for r in list_for_each_entry_safe(head):
        if r.n == 2:
            list_del(r.link)
    assert values(head) == [1, 3]


def test_plain_walk_deleting_current_faults() -> None:
    head, _ = make([1, 2, 3])

    def walker() -> None:
        for r in list_for_each_entry(head):
            if r.n == 2:
                list_del(r.link)

    with pytest.raises(Finding) as exc:
        walker()
    f = exc.value
    assert f.kind == "GPF"
    assert f.message == ("general protection fault, probably for non-canonical address "
                         "0xdead000000000100: 0000 [#1] SMP")
    assert f.function == "walker"


def test_double_list_del_is_debug_list_bug() -> None:
    head, roots = make([1, 2])
    list_del(roots[0].link)
    with pytest.raises(Finding) as exc:
        list_del(roots[0].link)
    assert exc.value.kind == "BUG"
    assert exc.value.message == ("list_del corruption, &root->link->next is LIST_POISON1 "
                                 "(0xdead000000000100)")
    assert exc.value.details[0] == "kernel BUG at lib/list_debug.c: __list_del_entry_valid"


def test_double_add_and_corruption_are_debug_list_bugs() -> None:
    head, roots = make([1, 2])
    with pytest.raises(Finding) as exc:
        list_add(roots[0].link, head)  # already first: new == next
    assert exc.value.message.startswith("list_add double add: new=&root->link")
    other = LIST_HEAD("other")
    head.next.prev = other  # corrupt the list
    with pytest.raises(Finding) as exc:
        list_add(root(9).link, head)
    assert exc.value.message == ("list_add corruption. next->prev should be prev "
                                 "(&tdp_mmu_roots), but was &other. (next=&root->link).")


def kvm_tdp_mmu_zap_all(s: SimpleNamespace, safe: bool) -> None:
    """Walk the roots and yield mmu_lock in the body (like the seed's v5.10 flows)."""
    spin_lock(s.mmu_lock)
    walk = list_for_each_entry_safe if safe else list_for_each_entry
    for r in walk(s.roots):
        s.visited.append(r.n)
        cond_resched_lock(s.mmu_lock)
    spin_unlock(s.mmu_lock)


def kvm_mmu_free_root(s: SimpleNamespace, n: int) -> None:
    spin_lock(s.mmu_lock)
    victim = next(r for r in list_for_each_entry(s.roots) if r.n == n)
    list_del(victim.link)
    spin_unlock(s.mmu_lock)


def roots_setup() -> SimpleNamespace:
    head, roots = make([1, 2, 3])
    return SimpleNamespace(mmu_lock=spinlock_t("&kvm->mmu_lock"), roots=head, visited=[])


def test_deleting_the_walked_entry_while_yielding_faults() -> None:
    res = explore(roots_setup, [lambda s: kvm_tdp_mmu_zap_all(s, safe=False),
                                lambda s: kvm_mmu_free_root(s, 1)], strategy="dpor")
    v = res.violation
    assert v is not None and v.kind == "GPF"
    assert "0xdead000000000100" in v.message
    assert v.function == "kvm_tdp_mmu_zap_all"
    assert v.thread == "T0"


def test_safe_walk_survives_deleting_current_but_not_next() -> None:
    # Deleting the entry being visited is what _safe is for...
    res = explore(roots_setup, [lambda s: kvm_tdp_mmu_zap_all(s, safe=True),
                                lambda s: kvm_mmu_free_root(s, 1)], strategy="dpor")
    assert res.ok and res.complete
    # ...but the next entry, read before the body yielded, may be deleted meanwhile.
    res = explore(roots_setup, [lambda s: kvm_tdp_mmu_zap_all(s, safe=True),
                                lambda s: kvm_mmu_free_root(s, 2)], strategy="dpor")
    v = res.violation
    assert v is not None and v.kind == "GPF" and v.function == "kvm_tdp_mmu_zap_all"


def test_walking_a_freed_entry_is_use_after_free() -> None:
    def setup() -> SimpleNamespace:
        s = roots_setup()
        head = LIST_HEAD("tdp_mmu_roots")
        for n in (1, 2):
            list_add_tail(kmalloc(root, n).link, head)
        s.roots = head
        return s

    def free_root(s: SimpleNamespace) -> None:
        spin_lock(s.mmu_lock)
        victim = list_first_entry(s.roots)
        list_del(victim.link)
        kfree(victim)
        spin_unlock(s.mmu_lock)

    res = explore(setup, [lambda s: kvm_tdp_mmu_zap_all(s, safe=False), free_root],
                  strategy="dpor")
    v = res.violation
    assert v is not None and v.kind == "KASAN" and v.function == "kvm_tdp_mmu_zap_all"
    assert v.details[0].startswith("Read of root#1.link.next")


def test_rcu_walk_survives_list_del_rcu_with_grace_period() -> None:
    def setup() -> SimpleNamespace:
        s = roots_setup()
        head = LIST_HEAD("tdp_mmu_roots")
        for n in (1, 2, 3):
            list_add_tail(kmalloc(root, n).link, head)
        s.roots = head
        s.seen = []
        return s

    def reader(s: SimpleNamespace) -> None:
        rcu_read_lock()
        for r in list_for_each_entry_rcu(s.roots):
            s.seen.append(r.n)
        rcu_read_unlock()

    def updater(s: SimpleNamespace, wait: bool) -> None:
        spin_lock(s.mmu_lock)
        victim = next(r for r in list_for_each_entry(s.roots) if r.n == 2)
        list_del_rcu(victim.link)
        spin_unlock(s.mmu_lock)
        if wait:
            synchronize_rcu()
        kfree(victim)

    seen: set[tuple[int, ...]] = set()
    res = explore(setup, [reader, lambda s: updater(s, True)], strategy="dpor",
                  check=lambda s: seen.add(tuple(s.seen)))
    assert res.ok and res.complete
    assert seen == {(1, 2, 3), (1, 3)}
    res = explore(setup, [reader, lambda s: updater(s, False)], strategy="dpor")
    assert res.violation is not None and res.violation.kind == "KASAN"
    assert res.violation.function == "reader"


def test_rcu_walk_outside_reader_section_is_reported() -> None:
    def setup() -> SimpleNamespace:
        s = roots_setup()
        return s

    def walker(s: SimpleNamespace) -> None:
        spin_lock(s.mmu_lock)
        for _ in list_for_each_entry_rcu(s.roots, lockdep_is_held(s.mmu_lock)):
            pass
        spin_unlock(s.mmu_lock)
        for _ in list_for_each_entry_rcu(s.roots):
            pass

    v = explore(setup, [walker]).violation
    assert v is not None and v.kind == "lockdep"
    assert v.message == ("WARNING: suspicious RCU usage: RCU-list traversed in non-reader "
                         "section!!")


def test_rcu_reader_sees_new_entry_after_publication() -> None:
    def setup() -> SimpleNamespace:
        s = roots_setup()
        s.seen = []
        return s

    def reader(s: SimpleNamespace) -> None:
        rcu_read_lock()
        s.seen = [r.n for r in list_for_each_entry_rcu(s.roots)]
        rcu_read_unlock()

    def adder(s: SimpleNamespace) -> None:
        spin_lock(s.mmu_lock)
        list_add_rcu(root(0).link, s.roots)
        spin_unlock(s.mmu_lock)

    seen: set[tuple[int, ...]] = set()
    res = explore(setup, [reader, adder], strategy="dpor",
                  check=lambda s: seen.add(tuple(s.seen)))
    assert res.ok and seen == {(1, 2, 3), (0, 1, 2, 3)}
