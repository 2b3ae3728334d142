"""slab: KASAN use-after-free and double-free reports, kmemleak."""

from __future__ import annotations

from types import SimpleNamespace

from tdpmmu.engine import Var, explore
from tdpmmu.kernel import (
    READ_ONCE,
    kfree,
    kmalloc,
    kmem_cache_alloc,
    kmem_cache_create,
    kmem_cache_free,
    kmemleak_check,
    kmemleak_not_leak,
    kmemleak_report,
    list_head,
    object_is_freed,
    refcount_read,
    refcount_t,
)


class kvm_mmu_page:
    __slots__ = ("gfn", "root_count", "link", "spt", "__weakref__")

    def __init__(self, gfn: int = 0) -> None:
        self.gfn = gfn
        self.root_count = refcount_t(1)
        self.link = list_head(self)
        self.spt = [Var(0, f"spte{i}") for i in range(4)]


class plain:
    def __init__(self) -> None:
        self.x = 1


def alloc_tdp_mmu_page(s: SimpleNamespace) -> kvm_mmu_page:
    return kmem_cache_alloc(s.cache, 7)


def tdp_mmu_free_sp(s: SimpleNamespace, sp: kvm_mmu_page) -> None:
    kmem_cache_free(s.cache, sp)


def setup() -> SimpleNamespace:
    return SimpleNamespace(cache=kmem_cache_create("mmu_page_header", kvm_mmu_page), sp=None)


def test_use_after_free_names_alloc_free_and_access() -> None:
    def use_root(sp: kvm_mmu_page) -> int:
        return sp.gfn

    def thread(s: SimpleNamespace) -> None:
        sp = alloc_tdp_mmu_page(s)
        tdp_mmu_free_sp(s, sp)
        use_root(sp)

    v = explore(setup, [thread]).violation
    assert v is not None and v.kind == "KASAN"
    assert v.message == "BUG: KASAN: use-after-free in use_root"
    assert v.function == "use_root"
    d = v.details
    assert d[0] == "Read of kvm_mmu_page#1.gfn by task thread:"
    alloc = d.index("Allocated by task thread:")
    free = d.index("Freed by task thread:")
    assert d[alloc + 1] == "  alloc_tdp_mmu_page" and d[alloc + 2] == "  thread"
    assert d[free + 1] == "  tdp_mmu_free_sp"
    assert any("cache mmu_page_header" in line for line in d)


def test_write_after_free_and_across_threads() -> None:
    def allocator(s: SimpleNamespace) -> None:
        s.sp = alloc_tdp_mmu_page(s)

    def freer(s: SimpleNamespace) -> None:
        tdp_mmu_free_sp(s, s.sp)

    def writer(s: SimpleNamespace) -> None:
        READ_ONCE(s.go)  # a first step: the freer's free runs before it in dfs order
        s.sp.gfn = 3

    def setup2() -> SimpleNamespace:
        s = setup()
        s.go = Var(0, "go")
        return s

    v = explore(setup2, [allocator, freer, writer], strategy="dfs",
                max_executions=1).violation
    assert v is not None and v.kind == "KASAN"
    assert v.message == "BUG: KASAN: use-after-free in writer"
    assert v.details[0].startswith("Write of kvm_mmu_page#1.gfn by task writer")
    assert "Allocated by task allocator:" in v.details
    assert "Freed by task freer:" in v.details


def test_embedded_objects_are_freed_too() -> None:
    def thread(s: SimpleNamespace) -> None:
        sp = alloc_tdp_mmu_page(s)
        count, link, spte = sp.root_count, sp.link, sp.spt[2]
        tdp_mmu_free_sp(s, sp)
        assert object_is_freed(count) and object_is_freed(link) and object_is_freed(spte)
        assert link.owner is sp  # container_of stays legal
        s.sp = spte
        READ_ONCE(spte)

    v = explore(setup, [thread]).violation
    assert v is not None and v.kind == "KASAN"
    assert v.message == "BUG: KASAN: use-after-free in thread"
    assert v.details[0] == "Read of kvm_mmu_page#1.spt[2].value by task thread:"

    def refs(s: SimpleNamespace) -> None:
        sp = alloc_tdp_mmu_page(s)
        count = sp.root_count
        tdp_mmu_free_sp(s, sp)
        refcount_read(count)

    v = explore(setup, [refs]).violation
    assert v is not None and v.kind == "KASAN" and "root_count" in v.details[0]


def test_racing_free_and_read_once_found_by_dpor() -> None:
    # The reader fetched the pointer before the free; DPOR must try the free
    # between that and the READ_ONCE of a field.
    def setup2() -> SimpleNamespace:
        s = setup()
        s.sp = kmem_cache_alloc(s.cache, 1)
        return s

    def reader(s: SimpleNamespace) -> None:
        sp = s.sp
        READ_ONCE(sp.spt[0])
        READ_ONCE(sp.spt[1])

    def freer(s: SimpleNamespace) -> None:
        tdp_mmu_free_sp(s, s.sp)

    res = explore(setup2, [reader, freer], strategy="dpor")
    v = res.violation
    assert v is not None and v.kind == "KASAN" and v.function == "reader"
    assert "Allocated by task setup:" in v.details


def test_double_free_names_both_sites() -> None:
    def first_free(s: SimpleNamespace, sp: kvm_mmu_page) -> None:
        kfree(sp)

    def thread(s: SimpleNamespace) -> None:
        sp = alloc_tdp_mmu_page(s)
        first_free(s, sp)
        tdp_mmu_free_sp(s, sp)

    v = explore(setup, [thread]).violation
    assert v is not None and v.kind == "KASAN"
    assert v.message == "BUG: KASAN: double-free in tdp_mmu_free_sp"
    d = v.details
    assert d[d.index("Allocated by task thread:") + 1] == "  alloc_tdp_mmu_page"
    assert d[d.index("Freed by task thread:") + 1] == "  first_free"


def test_double_free_by_two_threads_found_by_dpor() -> None:
    def setup2() -> SimpleNamespace:
        s = setup()
        s.sp = kmalloc(plain)
        return s

    def put(s: SimpleNamespace) -> None:
        kfree(s.sp)

    v = explore(setup2, [put, put], strategy="dpor").violation
    assert v is not None and v.message == "BUG: KASAN: double-free in put"


def test_kfree_null_is_fine() -> None:
    assert explore(setup, [lambda s: kfree(None)]).ok


def test_kmemleak_reports_live_objects() -> None:
    def leaky(s: SimpleNamespace) -> None:
        s.sp = alloc_tdp_mmu_page(s)
        kfree(kmalloc(plain))

    records: list = []

    def check(s: SimpleNamespace) -> None:
        records.extend(kmemleak_report())
        kmemleak_check()

    res = explore(setup, [leaky], check=check)
    v = res.violation
    assert v is not None and v.kind == "kmemleak"
    assert v.message == "kmemleak: 1 new suspected memory leaks"
    assert v.function == "alloc_tdp_mmu_page"
    assert records[0].type_name == "kvm_mmu_page" and records[0].task == "leaky"
    assert records[0].chain[:2] == ["alloc_tdp_mmu_page", "leaky"]
    assert "unreferenced object kvm_mmu_page#1 (kvm_mmu_page, cache mmu_page_header):" \
        in v.details


def test_kmemleak_counts_setup_allocations_and_not_leak() -> None:
    def setup2() -> SimpleNamespace:
        s = setup()
        s.kvm = kmalloc(plain)  # freed by the thread
        s.static = kmalloc(plain)
        kmemleak_not_leak(s.static)
        return s

    def teardown(s: SimpleNamespace) -> None:
        kfree(s.kvm)

    assert explore(setup2, [teardown], check=lambda s: kmemleak_check()).ok
    v = explore(setup2, [lambda s: None], check=lambda s: kmemleak_check()).violation
    assert v is not None and v.message == "kmemleak: 1 new suspected memory leaks"
    assert any('comm "setup"' in d for d in v.details)


def test_kmemleak_registry_is_per_execution() -> None:
    # Every execution allocates one object and frees it only in one ordering.
    def setup2() -> SimpleNamespace:
        s = setup()
        s.flag = Var(0, "flag")
        return s

    def alloc(s: SimpleNamespace) -> None:
        s.obj = kmalloc(plain)
        s.flag.store(1)

    def free_if_ready(s: SimpleNamespace) -> None:
        if s.flag.load():
            kfree(s.obj)

    counts: list[int] = []
    res = explore(setup2, [alloc, free_if_ready], strategy="dfs",
                  check=lambda s: counts.append(len(kmemleak_report())))
    assert res.ok and res.complete
    assert sorted(set(counts)) == [0, 1]  # never accumulates across executions


def test_freeing_a_lock_races_with_taking_it() -> None:
    from tdpmmu.kernel import spin_lock, spin_unlock, spinlock_t

    class kvm:
        def __init__(self) -> None:
            self.mmu_lock = spinlock_t("&kvm->mmu_lock")

    def setup2() -> SimpleNamespace:
        s = setup()
        s.kvm = kmalloc(kvm)
        s.lock = s.kvm.mmu_lock
        return s

    def user(s: SimpleNamespace) -> None:
        spin_lock(s.lock)
        spin_unlock(s.lock)

    def destroyer(s: SimpleNamespace) -> None:
        kfree(s.kvm)

    v = explore(setup2, [user, destroyer], strategy="dpor").violation
    assert v is not None and v.kind == "KASAN" and v.function == "user"


def test_wrong_cache_free_warns_and_pages_are_tracked() -> None:
    from tdpmmu.kernel import free_page, get_zeroed_page

    class page_table:
        def __init__(self) -> None:
            self.spt = [Var(0) for _ in range(4)]

    def wrong(s: SimpleNamespace) -> None:
        other = kmem_cache_create("other", kvm_mmu_page)
        kmem_cache_free(other, alloc_tdp_mmu_page(s))

    v = explore(setup, [wrong]).violation
    assert v is not None and v.kind == "WARN"
    assert v.message == ("kmem_cache_free: Wrong slab cache. other but object is from "
                         "mmu_page_header")

    def pages(s: SimpleNamespace) -> None:
        pt = get_zeroed_page(page_table)
        s.pt = pt
        free_page(pt)
        READ_ONCE(pt.spt[0])

    v = explore(setup, [pages]).violation
    assert v is not None and v.kind == "KASAN"
    assert any("cache page" in d for d in v.details)


class page_table:
    """A page reached through its tree: walkers declare the tree, not the page."""

    __slab_reached_through__ = staticmethod(lambda pt: (object.__getattribute__(pt, "root"),))

    def __init__(self, root: object) -> None:
        self.root = root
        self.spt = [0, 0]


def _walk_vs_free(cls: type) -> tuple[int, object]:
    from tdpmmu.engine import READ, visible

    def setup3() -> SimpleNamespace:
        # The tree is a plain object (a Var would be embedded in the page).
        s = SimpleNamespace(tree=plain(), cache=kmem_cache_create("pt", cls))
        s.pt = kmem_cache_alloc(s.cache, s.tree)
        return s

    def walker(s: SimpleNamespace) -> None:
        visible("EPT walk", ((s.tree, READ),))
        _ = s.pt.spt[0]  # the walk passes through the page: a use after a free

    def freer(s: SimpleNamespace) -> None:
        kmem_cache_free(s.cache, s.pt)  # freed while still linked: the bug

    res = explore(setup3, [walker, freer], strategy="dpor")
    return res.executions, res.violation


def test_freeing_a_page_writes_the_structure_walkers_reach_it_through() -> None:
    executions, v = _walk_vs_free(page_table)
    assert v is not None and v.kind == "KASAN" and v.function == "walker"


def test_without_reached_through_dpor_sees_the_walk_and_free_as_independent() -> None:
    # The counterpart: the same program without the declaration is one trace to
    # DPOR (walker first), so the declaration is what finds the bug above.
    class unlinked_page(page_table):
        __slab_reached_through__ = None

    executions, v = _walk_vs_free(unlinked_page)
    assert executions == 1 and v is None
