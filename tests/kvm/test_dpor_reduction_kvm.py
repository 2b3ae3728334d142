"""DPOR's reduction on the KVM model, against searches that do not rely on it.

The reduction is only as sound as the accesses the model declares (SPTE
words, TLBs, request bits, locks; see ``tdpmmu.kvm.shared``).  A final state
is the paging structure of every root, every vCPU's TLB and the dirty
bitmaps when the threads are done, with what they observed on the way: each
SPTE's history of values and each vCPU's completed guest accesses.  Plain
dfs does not finish even on the smallest KVM scenarios (a vCPU run is some
30 visible operations), so on small ones dpor is held to two references: every final state of a
preemption-bounded search (CHESS, two preemptions: no reduction at all) is
one dpor reaches, and dpor over SPTE words reaches exactly the final states
of dpor over whole roots (one object per paging structure, the coarser
relation the finer one must not lose anything against).  The same holds for
the other footprints finer than they were: commuting updates (the vCPU
threads' exit count, request bits, TLB flushes, dirty-bitmap bits), TLB words
per gfn, the memslot-removed check reading its range only, and a grace
period's wait reading only the readers' words of completed sections: with
all of them coarse again, the same final states and observations.
"""

from __future__ import annotations

import contextlib
import tomllib
from typing import Any

import pytest

from tdpmmu import engine
from tdpmmu.checker import build_model, resolve_kernel
from tdpmmu.engine import set_commuting_updates
from tdpmmu.kernel.rcu import set_reader_words
from tdpmmu.kvm.shared import set_check_footprint, set_spte_granularity, set_tlb_granularity
from tdpmmu.properties.peek import mmu_roots, peek
from tdpmmu.scenarios.format import parse_scenario


def _final_state(world: Any) -> tuple:
    kvm = world.kvm
    roots = []
    for root in mmu_roots(kvm):
        pages, todo = [], [root]
        while todo:  # every page reachable from the root, with its entries
            sp = todo.pop()
            spt = tuple(peek(sp, "spt"))
            pages.append((peek(sp, "role").level, peek(sp, "gfn"), spt))
            for spte in spt:
                child = kvm.phys.get(spte >> 12) if spte else None
                if child is not None and child is not sp and peek(child, "spt") is not None \
                        and peek(child, "role") is not None:
                    todo.append(child)
        roots.append((str(peek(root, "role")), tuple(sorted(pages))))
    tlbs = tuple(tuple(sorted(v.tlb.entries.items())) for v in kvm.vcpus)
    bitmaps = tuple(tuple(s.dirty_bitmap or ()) for as_id in range(2)
                    for s in kvm.memslots[as_id].value.slots)
    return tuple(sorted(roots)), tlbs, bitmaps


def _finals(kernel: str, text: str, strategy: str) -> tuple[set, int]:
    scenario = parse_scenario(tomllib.loads(text), "<test>")
    model = build_model(resolve_kernel(kernel), scenario, {})
    seen: set = set()
    # What the threads observed, in their order: each SPTE's history of values
    # (stores to one SPTE are ordered in every equivalent interleaving) and
    # each vCPU's completed guest accesses.
    history: dict[Any, list] = {}

    def probe(event: str, f: dict[str, Any]) -> None:
        if event == "kvm_tdp_mmu_spte_changed":
            key = ("spte", f["as_id"], f["gfn"], f["level"])
            history.setdefault(key, []).append(f["new_spte"])
        elif event == "guest_access":
            key = ("vcpu", f["vcpu"].vcpu_id)
            history.setdefault(key, []).append((f["gfn"], f["pfn"], f["write"]))

    def setup() -> Any:
        world = model.setup()
        history.clear()
        world.kvm.probes.append(probe)
        return world

    def check(world: Any) -> None:
        seen.add((_final_state(world),
                  tuple(sorted((k, tuple(v)) for k, v in history.items()))))
        model.check(world)

    res = engine.explore(setup, model.threads, strategy=strategy, check=check,
                         preemption_bound=2 if strategy == "bounded" else None,
                         invariant=model.invariant, minimize=False)
    assert res.violation is None, res.violation
    assert res.complete or strategy == "bounded"
    return seen, res.executions


def _vm(vcpus: int, log_dirty: bool = False) -> str:
    """A TDP MMU VM with ``vcpus`` vCPUs and one 16-page memslot."""
    return f"""
name = "t"
[vm]
tdp_mmu = 1
vcpus = {vcpus}
[[memslot]]
id = 0
base_gfn = 0x0
npages = 16
hva = 0x100
log_dirty = {str(log_dirty).lower()}
"""

def _pml_vs_write(host_op: str, log_dirty: bool) -> str:
    """A PML VM whose host does ``host_op`` on slot 0 while vcpu0 writes a page
    it wrote before."""
    return _vm(1, log_dirty).replace("tdp_mmu = 1", "tdp_mmu = 1\npml = 1") + f"""
[[setup]]
op = "vcpu_run"
vcpu = 0
guest = ["write 0x1"]
[[thread]]
name = "host"
actions = [ {{ op = "{host_op}", slot = 0 }} ]
[[thread]]
name = "vcpu0"
actions = [ {{ op = "vcpu_run", vcpu = 0, guest = ["write 0x1"] }} ]
"""


CASES = {
    # Read-locked faults of two vCPUs: gfns in one leaf page and in another.
    "two-vcpus-fault": ("v5.12", _vm(2) + """
[[thread]]
name = "vcpu0"
actions = [ { op = "vcpu_run", vcpu = 0, guest = ["write 0x1"] } ]
[[thread]]
name = "vcpu1"
actions = [ { op = "vcpu_run", vcpu = 1, guest = ["read 0x2"] } ]
"""),
    # A zap of a whole page table against a vCPU's walks and faults.
    "zap-vs-walk": ("v5.11", _vm(1) + """
[[setup]]
op = "vcpu_run"
vcpu = 0
guest = ["write 0x1", "write 0x6"]
[[thread]]
name = "host"
actions = [ { op = "zap_gfn_range", base_gfn = 0x0, npages = 4 } ]
[[thread]]
name = "vcpu0"
actions = [ { op = "vcpu_run", vcpu = 0, guest = ["read 0x2"] } ]
"""),
    # PML: a dirty-log read clearing dirty bits, and a 5.12+ enable turning
    # PML on, against a guest write the CPU logs by setting the dirty bit.
    "pml-read-vs-write": ("v5.11", _pml_vs_write("get_dirty_log", log_dirty=True)),
    "pml-enable-vs-write": ("v5.13", _pml_vs_write("dirty_log_enable", log_dirty=False)),
    # An MMU-notifier invalidation against a read-locked fault (5.13 walkers).
    "invalidate-vs-fault": ("v5.13", _vm(1) + """
[[setup]]
op = "vcpu_run"
vcpu = 0
guest = ["write 0x1"]
[[thread]]
name = "mm"
actions = [ { op = "invalidate", hva = 0x101, npages = 2 } ]
[[thread]]
name = "vcpu0"
actions = [ { op = "vcpu_run", vcpu = 0, guest = ["write 0x2"] } ]
"""),
}


# Cases for the footprints of commuting updates, TLB words, the memslot check
# and grace periods (besides CASES, whose vCPU threads exit and flush too).
FOOTPRINT_CASES = {
    # Two vCPUs dirtying pages of a logged slot: set_bit_le from both, the
    # exit count decremented by both.
    "two-vcpus-dirty": ("v5.11", _vm(2, log_dirty=True) + """
[[thread]]
name = "vcpu0"
actions = [ { op = "vcpu_run", vcpu = 0, guest = ["write 0x1"] } ]
[[thread]]
name = "vcpu1"
actions = [ { op = "vcpu_run", vcpu = 1, guest = ["write 0x6"] } ]
"""),
    # A memslot deletion (fast zap: a reload request, TLB flushes, SRCU grace
    # periods, the memslot-removed check) against a vCPU reading a gfn of it.
    "delete-vs-read": ("v5.11", """
name = "t"
[vm]
tdp_mmu = 1
vcpus = 1
[[memslot]]
id = 0
base_gfn = 0x0
npages = 4
hva = 0x100
[[memslot]]
id = 1
base_gfn = 0x8
npages = 4
hva = 0x200
[[setup]]
op = "vcpu_run"
vcpu = 0
guest = ["write 0x1"]
[[thread]]
name = "host"
actions = [ { op = "memslot_delete", slot = 0, as_id = 0 } ]
[[thread]]
name = "vcpu0"
actions = [ { op = "vcpu_run", vcpu = 0, guest = ["read 0x1"] } ]
"""),
}


@contextlib.contextmanager
def _coarse_footprints():
    """Every footprint of this module's docstring coarse again (SPTEs stay words)."""
    old = (set_commuting_updates(False), set_tlb_granularity("whole"),
           set_check_footprint("root"), set_reader_words(False))
    try:
        yield
    finally:
        set_commuting_updates(old[0])
        set_tlb_granularity(old[1])
        set_check_footprint(old[2])
        set_reader_words(old[3])


@pytest.mark.parametrize("case", sorted(CASES) + sorted(FOOTPRINT_CASES))
def test_fine_footprints_reach_the_final_states_of_coarse_ones(case):
    kernel, text = {**CASES, **FOOTPRINT_CASES}[case]
    fine, n_fine = _finals(kernel, text, "dpor")
    with _coarse_footprints():
        coarse, n_coarse = _finals(kernel, text, "dpor")
    assert fine == coarse
    if case in FOOTPRINT_CASES:  # the cases made for them: the reduction shows
        assert n_fine < n_coarse
    else:
        assert n_fine <= n_coarse


@pytest.mark.parametrize("case", sorted(CASES))
def test_dpor_reaches_every_final_state_of_a_preemption_bounded_search(case):
    kernel, text = CASES[case]
    bounded, _ = _finals(kernel, text, "bounded")
    dpor, _ = _finals(kernel, text, "dpor")
    assert bounded <= dpor


@pytest.mark.parametrize("case", sorted(CASES))
def test_spte_words_reach_the_final_states_of_whole_roots(case):
    kernel, text = CASES[case]
    words, n_words = _finals(kernel, text, "dpor")
    old = set_spte_granularity("root")
    try:
        roots, n_roots = _finals(kernel, text, "dpor")
    finally:
        set_spte_granularity(old)
    assert words == roots
    assert n_words <= n_roots


def _put_without_pages_lock() -> type:
    """test_v6_9's what-if: the final put unlinks the root without
    tdp_mmu_pages_lock around list_del_rcu."""
    from tdpmmu.kvm.v6_9 import V6_9

    class PutWithoutPagesLock(V6_9):
        name = "v6.9+put-without-pages-lock"
        put_root_takes_pages_lock = False

    return PutWithoutPagesLock


# Known bugs: (kernel, scenario, what the report starts with or names).
KNOWN_BUGS = {
    "v5.10 seed-bug": ("v5.10", "seed-bug", "kernel BUG"),
    "v5.13 notifier-yield-vs-last-put": ("v5.13", "notifier-yield-vs-last-put",
                                         "BUG: KASAN: use-after-free"),
    "v6.9 put without pages lock": (_put_without_pages_lock, "invalidate-vs-free-under-read-lock",
                                    "tdp_mmu_roots"),
}


@pytest.mark.parametrize("bug", sorted(KNOWN_BUGS))
@pytest.mark.parametrize("footprints", ["fine", "coarse"])
def test_known_bugs_are_found_with_fine_and_coarse_footprints(bug, footprints):
    from tdpmmu.checker import check

    kernel, scenario, text = KNOWN_BUGS[bug]
    kernel = kernel() if callable(kernel) else kernel
    ctx = _coarse_footprints() if footprints == "coarse" else contextlib.nullcontext()
    with ctx:
        res = check(kernel, scenario, max_executions=3000)
    assert res.violation is not None, (bug, footprints, res.result.executions)
    assert text in res.violation.message, res.violation.message
