"""Acceptance of the KVM model issue: the seed thread's bug, its first fix attempt,
the landed fix, the what-if knobs, and exact replay."""

from __future__ import annotations

import pytest

from tdpmmu.checker import check, replay
from tdpmmu.kvm.versions import V5_11
from tdpmmu.scenarios import SEED_SCENARIOS

LIST_POISON1 = "0xdead000000000100"


def _steps(v, thread=None):
    return [s for s in v.trace if thread is None or s.thread == thread]


def _mark_step(v, text):
    """Index of the first step whose notes include ``text`` (after the function a
    note credits, ``function: text``)."""
    for s in v.trace:
        if any(m == text or m.endswith(": " + text) for m in s.marks):
            return s.index
    raise AssertionError(f"no step notes {text!r}: {[s.marks for s in v.trace]}")


def test_v5_10_seed_bug_is_the_bug_in_kvm_mmu_get_root():
    res = check("v5.10", "seed-bug", strategy="dpor")
    v = res.violation
    assert v is not None
    assert v.kind == "BUG"
    assert v.message == "kernel BUG at arch/x86/kvm/mmu/mmu_internal.h: kvm_mmu_get_root"
    assert v.function == "kvm_mmu_get_root"
    assert v.thread == "vcpu0"
    # The reported call chain is the vCPU's kvm_mmu_load, as in the oops.
    assert any("kvm_mmu_load" in d for d in v.details)
    # The interleaving of the thread: the walker's get, its yield, the vCPU's
    # put, the walker's put to 0 without a free, then the vCPU's get.
    walker_get = _mark_step(v, "get r0 -> 2")
    vcpu_put = _mark_step(v, "put r0 -> 1")
    walker_put = _mark_step(v, "put r0 -> 0")
    assert v.trace[walker_get].thread == "host"
    assert v.trace[vcpu_put].thread == "vcpu0"
    assert v.trace[walker_put].thread == "host"
    yields = [s.index for s in _steps(v, "host")
              if s.label.startswith("spin_unlock") and walker_get < s.index < vcpu_put
              and "tdp_mmu_iter_flush_cond_resched" in s.stack]
    assert yields, "the walker must drop mmu_lock between its get and the vCPU's put"
    assert walker_get < yields[0] < vcpu_put < walker_put
    assert not any("free r0" in m for s in v.trace for m in s.marks)
    last = v.trace[-1]
    assert last.thread == "vcpu0" and "get_tdp_mmu_vcpu_root" in last.stack
    assert last.index > walker_put
    # The broken invariant is marked as the root cause, where the walker lets go.
    assert v.root_cause is not None
    assert v.root_cause.message.startswith("no-zero-count-root")
    assert v.root_cause.thread == "host"
    assert walker_put <= v.root_cause.step < last.index


def test_first_fix_attempt_faults_on_the_poisoned_next_pointer():
    # Without KASAN, as on the reporter's kernel (KASAN is the default).
    res = check("v5.10-fix-v1", "seed-bug", strategy="dpor", kasan=False)
    v = res.violation
    assert v is not None and v.kind == "GPF"
    assert LIST_POISON1 in v.message
    assert v.function == "kvm_tdp_mmu_zap_gfn_range"
    assert v.thread == "host"


def test_first_fix_attempt_with_kasan_reports_the_use_after_free():
    res = check("v5.10-fix-v1", "seed-bug", strategy="dpor")
    v = res.violation
    assert v is not None and v.kind == "KASAN"
    assert "use-after-free in kvm_tdp_mmu_zap_gfn_range" in v.message
    text = "\n".join(v.details)
    assert "kvm_tdp_mmu_free_root" in text  # the freeing call site
    assert "alloc_tdp_mmu_page" in text  # the allocating call site


@pytest.mark.parametrize("scenario", SEED_SCENARIOS)
def test_v5_11_verifies_every_seed_scenario(scenario):
    res = check("v5.11", scenario, strategy="dpor")
    assert res.violation is None, res.violation and res.violation.message
    assert res.result.complete
    assert res.result.cut_by is None
    assert res.result.executions >= 1


def test_knob_next_root_before_body_uses_the_freed_next_root():
    res = check("v5.11", "next-root-deleted", knobs={"next-root": "before-body"},
                kasan=False)
    v = res.violation
    assert v is not None
    # Without KASAN the stale root still reads root_count 0: the BUG fires.
    assert v.kind == "BUG" and v.function == "kvm_mmu_get_root"
    with_kasan = check("v5.11", "next-root-deleted", knobs={"next-root": "before-body"})
    assert with_kasan.violation.kind == "KASAN"
    assert "use-after-free" in with_kasan.violation.message


def test_knob_dirty_log_wrprot_first_loses_a_write():
    res = check("v5.11", "dirty-log-new-root", knobs={"dirty-log-order": "wrprot-first"})
    v = res.violation
    assert v is not None
    assert v.kind == "property"
    assert v.message.startswith("dirty-log-complete")
    assert "gfn 0x5" in v.message


def test_knob_list_add_tail_records_what_the_checker_shows():
    # The seed doubts visiting a root added during the walk could matter; the
    # checker agrees on this scenario: both insertions verify.
    tail = check("v5.11", "root-added-during-walk", knobs={"new-root": "list_add_tail"})
    head = check("v5.11", "root-added-during-walk")
    assert tail.violation is None and tail.result.complete
    assert head.violation is None and head.result.complete
    # Visiting the new root is a different set of behaviours, not the same one.
    assert tail.result.executions != head.result.executions


def test_knob_resched_always_shows_the_livelock_fixed_in_5_12():
    res = check("v5.11", "dirty-log-new-root", knobs={"resched": "always"}, max_steps=2000)
    v = res.violation
    assert v is not None and v.kind == "livelock"
    # The host is stuck in the write-protect walk, restarting at one SPTE.
    assert any("wrprot_gfn_range" in d for d in v.details)


REPORTED = [
    ("v5.10", "seed-bug", {}),
    ("v5.10-fix-v1", "seed-bug", {}),
    ("v5.10", "next-root-deleted", {}),
    ("v5.10", "teardown", {}),
    ("v5.11", "dirty-log-new-root", {"dirty-log-order": "wrprot-first"}),
    ("v5.11", "next-root-deleted", {"next-root": "before-body"}),
]


@pytest.mark.parametrize(("kernel", "scenario", "knobs"), REPORTED)
def test_replay_reproduces_the_violation_exactly(kernel, scenario, knobs):
    found = check(kernel, scenario, knobs=knobs).violation
    assert found is not None
    again = replay(kernel, scenario, found.schedule, knobs=knobs).violation
    assert again is not None
    assert (again.kind, again.message, again.function, again.thread, again.steps) == \
        (found.kind, found.message, found.function, found.thread, found.steps)
    assert [(s.thread, s.label) for s in again.trace] == \
        [(s.thread, s.label) for s in found.trace]


def test_other_strategies_find_the_seed_bug():
    # (dfs finds it too, but only after exhausting the late branches first.)
    for strategy in ("bounded", "pct", "random"):
        res = check("v5.10", "seed-bug", strategy=strategy, max_executions=3000)
        assert res.violation is not None, strategy
        assert res.violation.function == "kvm_mmu_get_root", strategy


class _NoZapOnInvalidate(V5_11):
    """A broken variant: invalidate_range_start zaps nothing."""

    name = "test-no-zap"

    def kvm_unmap_hva_range(self, kvm, start, end):
        return 0


class _ForgetsVcpus(V5_11):
    """A broken variant: VM teardown does not unload the vCPUs' roots."""

    name = "test-forgets-vcpus"

    def kvm_free_vcpus(self, kvm):
        pass


def test_invalidation_property_catches_a_kernel_that_does_not_zap():
    res = check(_NoZapOnInvalidate, "notifier-vs-unload")
    v = res.violation
    assert v is not None and v.kind == "property"
    # Reported as soon as invalidate_range_start returns (the MMU-notifier
    # contract), before invalidation-complete would see it at _end.
    assert v.message.startswith("mmu-notifier: after invalidate_range_start(hva 0x101-0x103) "
                                "returned, root r0 maps gfn 0x1"), v.message


def test_teardown_warns_about_a_root_left_on_the_list():
    res = check(_ForgetsVcpus, "seed-bug")
    v = res.violation
    assert v is not None
    assert v.kind == "WARN"
    assert v.function == "kvm_mmu_uninit_tdp_mmu"


class _ClearDoesNotProtect(V5_11):
    """A broken variant: KVM_CLEAR_DIRTY_LOG clears the bits but leaves the SPTEs writable."""

    name = "test-clear-no-wrprot"

    def kvm_arch_mmu_enable_log_dirty_pt_masked(self, kvm, slot, gfn_offset, mask):
        pass


def test_manual_protect_dirty_log_verifies_and_catches_a_clear_that_does_not_protect():
    ok = check("v5.11", "dirty-log-clear")
    assert ok.violation is None and ok.result.complete
    bad = check(_ClearDoesNotProtect, "dirty-log-clear").violation
    assert bad is not None and bad.message.startswith("dirty-log-complete")


def test_html_report_has_one_lane_per_thread_and_the_replay_command(tmp_path):
    import subprocess
    import sys
    from html.parser import HTMLParser

    class Heads(HTMLParser):
        """The texts of the page's column heads that name a thread (class "hd")."""

        def __init__(self) -> None:
            super().__init__()
            self.lanes: list[str] = []
            self._in = False

        def handle_starttag(self, tag, attrs):
            self._in = tag == "div" and dict(attrs).get("class") == "hd"

        def handle_data(self, data):
            if self._in:
                self.lanes.append(data)
                self._in = False

    out = tmp_path / "seed.html"
    proc = subprocess.run([sys.executable, "-m", "tdpmmu.cli", "check", "--kernel", "v5.10",
                           "--scenario", "seed-bug", "--html", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    page = out.read_text()
    heads = Heads()
    heads.feed(page)
    assert heads.lanes == ["step", "host", "vcpu0"]
    assert "kvm_mmu_get_root" in page
    assert "tdpmmu replay --kernel v5.10 --scenario seed-bug --schedule s1." in page


def test_non_fatal_warn_lets_the_run_go_on_to_the_leak():
    # With panic_on_warn the teardown WARN is the finding; without it the run
    # goes on and kmemleak reports the page tables the forgotten roots hold.
    fatal = check(_ForgetsVcpus, "seed-bug").violation
    assert fatal.kind == "WARN"
    res = check(_ForgetsVcpus, "seed-bug", panic_on_warn=False)
    v = res.violation
    assert v is not None and v.kind == "kmemleak"
    assert "kvm_mmu_page" in "\n".join(v.details)


@pytest.mark.parametrize("scenario", ["dirty-log-clear", "change-pte-and-age"])
def test_v5_11_verifies_the_other_built_in_scenarios(scenario):
    res = check("v5.11", scenario)
    assert res.violation is None, res.violation and res.violation.message
    assert res.result.complete


def test_a_guest_write_to_a_ksm_page_breaks_cow_instead_of_looping():
    from tdpmmu.checker import build_model, resolve_scenario
    from tdpmmu.kvm.versions import V5_11
    from tdpmmu.scenarios.format import Action

    model = build_model(V5_11, resolve_scenario("change-pte-and-age"))
    world = model.setup()
    kvm = world.kvm
    pte = kvm.mm.pte(0x101)
    from tdpmmu.scenarios.actions import ACTIONS
    ACTIONS["change_pte"](world, Action("change_pte", {"hva": 0x101}, "test"))
    ksm_pfn, writable = pte.value
    assert not writable
    ACTIONS["vcpu_run"](world, Action("vcpu_run", {"vcpu": 0, "guest": [("write", 0x1)]},
                                      "test"))
    new_pfn, writable = pte.value
    assert writable and new_pfn != ksm_pfn
    assert ksm_pfn in kvm.mm.old_pfns[0x101]
    tlb = kvm.vcpus[0].tlb.entries
    assert tlb[0x1] == (new_pfn, True)


def test_replay_command_carries_every_run_option():
    res = check(_ForgetsVcpus, "seed-bug", panic_on_warn=False, kasan=False,
                knobs={"resched": "always"})
    from tdpmmu.report import replay_command
    cmd = replay_command(res)
    assert "--no-panic-on-warn" in cmd and "--no-kasan" in cmd
    assert "--knob resched=always" in cmd


def test_example_variant_with_5_12s_forward_progress_removes_the_livelock():
    from pathlib import Path

    variant = str(Path(__file__).parents[2] / "examples" / "forward_progress.py")
    livelock = check("v5.11", "dirty-log-new-root", knobs={"resched": "always"},
                     max_steps=2000).violation
    assert livelock is not None and livelock.kind == "livelock"
    res = check(variant, "dirty-log-new-root", max_steps=2000)
    assert res.kernel == "v5.11+forward-progress"
    assert res.violation is None and res.result.complete


def test_knob_resched_never_shows_the_bug_needs_the_walk_to_yield():
    res = check("v5.10", "seed-bug", knobs={"resched": "never"})
    assert res.violation is None and res.result.complete


def test_default_resched_policy_does_not_livelock_a_single_yielding_walk():
    # set_dirty_gfn_range rewrites non-leaf SPTEs too; it must still finish
    # when it yields after every SPTE it sets.
    from tdpmmu.checker import build_model
    from tdpmmu.scenarios.format import parse_scenario

    class SetsDirty(V5_11):
        name = "test-set-dirty"

        def kvm_arch_commit_memory_region(self, kvm, old, new, change):
            self.kvm_mmu_slot_set_dirty(kvm, new)

    scen = parse_scenario({
        "name": "set-dirty", "vm": {"tdp_mmu": 1},  # the TDP MMU's walk, as the seed ran
        "memslot": [{"id": 0, "base_gfn": 0, "npages": 4, "hva": 256}],
        "setup": [{"op": "vcpu_run", "vcpu": 0, "guest": ["write 0x1", "write 0x2"]}],
        "thread": [{"name": "host", "actions": [{"op": "dirty_log_enable", "slot": 0}]}]},
        "test")
    assert build_model(SetsDirty, scen) is not None
    res = check(SetsDirty, scen, max_steps=2000)
    assert res.violation is None and res.result.complete
    always = check(SetsDirty, scen, knobs={"resched": "always"}, max_steps=2000).violation
    assert always is not None and always.kind == "livelock"
