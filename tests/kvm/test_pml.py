"""PML dirty logging (``[vm] pml``, ``kvm/vmx.py``): the hardware's dirty bit
and PML buffer, the ``kvm_x86_ops`` hooks that clear and set dirty bits, and
the flushes the dirty log then depends on."""

from __future__ import annotations

import inspect
import re

import pytest
from kvm_testlib import do, run_vcpu, scenario, what_if, world

from tdpmmu.checker import UserError, check
from tdpmmu.kvm.mmu_lock import KVM_MMU_LOCK, KVM_MMU_UNLOCK
from tdpmmu.kvm.spte import PAGE_SHIFT, is_accessed_spte, is_dirty_spte, is_writable_pte
from tdpmmu.kvm.v6_9 import V6_9
from tdpmmu.kvm.versions import BUILTIN, V5_11
from tdpmmu.properties.peek import mmu_roots, peek

PML_VERSIONS = [c for c in BUILTIN.values() if c.pml_dirty_logging is not None]
PML_SCENARIOS = ["dirty-log-pml-enable-vs-writes", "dirty-log-pml-get-vs-writes"]
LOGGED = [{"id": 0, "base_gfn": 0, "npages": 16, "hva": 0x100, "log_dirty": True}]


def leaf(kvm, gfn):
    """The 4K leaf SPTE mapping ``gfn`` in the first root (read like a debugger)."""
    sp = mmu_roots(kvm)[0]
    level = peek(sp, "role").level
    while level > 1:
        spte = peek(sp, "spt")[(gfn >> (9 * (level - 1))) & 511]
        sp = kvm.phys[spte >> PAGE_SHIFT]
        level -= 1
    return peek(sp, "spt")[gfn & 511]


@pytest.mark.parametrize("kernel", PML_VERSIONS, ids=lambda k: k.name)
def test_a_write_through_a_clean_leaf_sets_its_dirty_bit_and_logs_it_once(kernel):
    w = world(kernel, scenario([run_vcpu(0, "write 0x1")], memslots=LOGGED, pml=1))
    kvm, v = w.kvm, w.kvm.vcpus[0]
    assert is_dirty_spte(leaf(kvm, 1)), "make_spte sets the dirty bit of a writable leaf"
    do(w, "get_dirty_log", slot=0)  # takes gfn 1 and clears its dirty bit
    assert is_writable_pte(leaf(kvm, 1)) and not is_dirty_spte(leaf(kvm, 1))
    assert kvm.memslots[0].value.slots[0].dirty_bitmap[1] == 0
    do(w, "vcpu_run", vcpu=0, guest=["write 0x1", "write 0x1"])
    assert is_dirty_spte(leaf(kvm, 1)), "the CPU set the dirty bit"
    assert v.pml_buffer == [], "the exit flushed the buffer"
    assert kvm.memslots[0].value.slots[0].dirty_bitmap[1] == 1


def test_without_pml_dirty_logging_write_protects_and_keeps_dirty_bits():
    w = world(V5_11, scenario([run_vcpu(0, "write 0x1")], memslots=LOGGED))
    do(w, "get_dirty_log", slot=0)
    assert not is_writable_pte(leaf(w.kvm, 1)) and is_dirty_spte(leaf(w.kvm, 1))


@pytest.mark.parametrize("kernel", PML_VERSIONS, ids=lambda k: k.name)
@pytest.mark.parametrize("name", PML_SCENARIOS)
def test_the_released_versions_verify_the_pml_scenarios(kernel, name):
    res = check(kernel, name)
    assert res.violation is None, res.violation
    assert res.result.complete


def _leaf_clear_dirty_without_flush(self, kvm, memslot, tdp_walk):
    KVM_MMU_LOCK(kvm)
    tdp_walk()
    KVM_MMU_UNLOCK(kvm)


def _no_exit_flush(self, vcpu):
    vcpu.pml_buffer = []


# One-function bugs of the PML paths, each with the scenario that shows it.
WHAT_IFS = {
    # Dirty bits cleared, no TLB flush: a write through the entry that cached
    # the old dirty bit is logged nowhere.
    "leaf-clear-dirty-without-flush": (
        {"slot_tdp_walk_and_flush": _leaf_clear_dirty_without_flush},
        "dirty-log-pml-enable-vs-writes"),
    # Enabling that leaves the dirty bits set: the next writes are not logged.
    "enable-without-clearing-dirty-bits": (
        {"kvm_tdp_mmu_clear_dirty_slot": lambda self, kvm, slot: False},
        "dirty-log-pml-enable-vs-writes"),
    # A read that does not clear the dirty bits of the pages it takes: the
    # next writes of those pages are not logged.
    "get-dirty-log-without-clear": (
        {"kvm_mmu_clear_dirty_pt_masked": lambda self, kvm, slot, offset, mask: None},
        "dirty-log-pml-get-vs-writes"),
    # The exit drops the PML buffer instead of marking its pages dirty.
    "exit-without-pml-flush": ({"vmx_flush_pml_buffer": _no_exit_flush},
                               "dirty-log-pml-get-vs-writes"),
    # The read's TLB flush after mmu_lock is lost.
    "no-flush-after-clear": (
        {"kvm_arch_flush_remote_tlbs_memslot": lambda self, kvm, slot: None},
        "dirty-log-pml-get-vs-writes"),
}


# Each what-if on every version whose code calls what it overrides (5.13 and
# later clear a slot's dirty bits without slot_tdp_walk_and_flush).
def _called(kernel: type, name: str) -> bool:
    """Does some method ``kernel`` runs mention ``name``?"""
    for attr in dir(kernel):
        fn = inspect.getattr_static(kernel, attr)
        code = getattr(fn, "__code__", None)
        if attr != name and code is not None and name in code.co_names:
            return True
    return False


CASES = [(k, bug) for k in PML_VERSIONS for bug in sorted(WHAT_IFS)
         if all(_called(k, name) for name in WHAT_IFS[bug][0])]


def test_every_what_if_applies_to_some_versions_and_every_version_gets_some():
    assert {bug for _k, bug in CASES} == set(WHAT_IFS)
    assert {k for k, _bug in CASES} == set(PML_VERSIONS)


@pytest.mark.parametrize(("kernel", "bug"), CASES, ids=lambda c: getattr(c, "name", c))
def test_one_function_bugs_of_the_pml_paths_are_reported(kernel, bug):
    overrides, name = WHAT_IFS[bug]
    res = check(what_if(kernel, bug, **overrides), name)
    assert res.violation is not None, (bug, res.result.executions)
    assert "dirty-log-complete" in res.violation.message


def test_without_pml_the_cpu_sets_a_dirty_bit_aging_cleared_and_logs_nothing():
    """5.10-5.12's ``age_gfn_range`` clears the dirty bit too; the next write
    sets it again through the A/D assist, with no PML buffer to log into."""
    w = world(V5_11, scenario([run_vcpu(0, "write 0x1")]))
    kvm, v = w.kvm, w.kvm.vcpus[0]
    do(w, "age", hva=0x101, npages=1)
    assert is_writable_pte(leaf(kvm, 1)) and not is_dirty_spte(leaf(kvm, 1))
    do(w, "vcpu_run", vcpu=0, guest=["write 0x1"])
    assert is_dirty_spte(leaf(kvm, 1)) and v.pml_buffer == []


@pytest.mark.parametrize("kernel", [V5_11, V6_9], ids=lambda k: k.name)
def test_an_access_after_aging_sets_the_accessed_bit_again(kernel):
    """Aging clears the Accessed bit and flushes; the vCPU's next access, a
    read, walks and the CPU sets the bit (no fault: the leaf stays)."""
    w = world(kernel, scenario([run_vcpu(0, "write 0x1")]))
    kvm = w.kvm
    mapped = leaf(kvm, 1)
    do(w, "age", hva=0x101, npages=1)
    assert not is_accessed_spte(leaf(kvm, 1)) and not kvm.vcpus[0].tlb.entries
    do(w, "vcpu_run", vcpu=0, guest=["read 0x1"])
    assert is_accessed_spte(leaf(kvm, 1))
    assert leaf(kvm, 1) >> PAGE_SHIFT == mapped >> PAGE_SHIFT, "no fault replaced it"


@pytest.mark.parametrize("kernel", ["v5.12", "v5.13", "v6.9"])
def test_aging_clears_the_dirty_bit_only_before_5_13(kernel):
    """5.13 dropped 5.12's clearing of the Dirty bit in ``age_gfn_range``."""
    from tdpmmu.checker import resolve_kernel
    w = world(resolve_kernel(kernel), scenario([run_vcpu(0, "write 0x1")]))
    do(w, "age", hva=0x101, npages=1)
    assert not is_accessed_spte(leaf(w.kvm, 1))
    assert is_dirty_spte(leaf(w.kvm, 1)) == (kernel != "v5.12")


def test_pml_needs_the_tdp_mmu_and_a_version_that_has_it():
    with pytest.raises(UserError, match="needs the TDP MMU"):
        check(V5_11, scenario(pml=1, tdp_mmu=0))
    without = what_if(V5_11, "no-pml-paths", pml_dirty_logging=None)
    refused = re.escape(f"no PML dirty logging for kernel {without.name}")
    with pytest.raises(UserError, match=refused):
        check(without, scenario(pml=1))
    assert check(without, scenario()).violation is None  # without PML it runs
