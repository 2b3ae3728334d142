"""``--explain``: the story of a counterexample, read from the trace's notes."""

from __future__ import annotations

import os
import subprocess
import sys

from tdpmmu import checker
from tdpmmu.report.explain import _fold, narrative
from tdpmmu.report.story import holds, ref_events


def _index(lines: list[str], *fragments: str) -> int:
    for i, line in enumerate(lines):
        if all(f in line for f in fragments):
            return i
    raise AssertionError(f"no line with {fragments}: {lines}")


def test_seed_bug_story_in_order():
    res = checker.check("v5.10", "seed-bug")
    lines = narrative(res)
    get = _index(lines, "host (kvm_tdp_mmu_zap_gfn_range) takes a reference on r0")
    yld = _index(lines, "host", "yields kvm->mmu_lock while holding its reference on r0")
    vput = _index(lines, "vcpu0", "drops a reference on r0 (root_count -> 1)")
    hput = _index(lines, "host", "drops its reference on r0 (root_count -> 0)")
    nofree = _index(lines, "nobody frees r0")
    bug = _index(lines, "vcpu0 then hits BUG in kvm_mmu_get_root")
    assert get < yld < vput < hput <= nofree < bug == len(lines) - 1
    # every line names the step it comes from, and those steps are the trace's
    for line in lines:
        step = int(line.rsplit("(step ", 1)[1].rstrip(")"))
        assert 0 <= step < len(res.violation.trace)


def test_fix_v1_story_says_the_fault_came_after_the_free():
    res = checker.check("v5.10-fix-v1", "seed-bug", kasan=False)
    lines = narrative(res)
    free = _index(lines, "frees root r0")
    gpf = _index(lines, "then hits GPF", "0xdead000000000100", "after r0 was freed")
    assert free < gpf
    assert not any("nobody frees" in line for line in lines)
    lines = narrative(checker.check("v5.10-fix-v1", "seed-bug", kasan=True))
    assert _index(lines, "frees root r0") < _index(lines, "then hits KASAN",
                                                   "after r0 was freed")


def test_story_reads_the_notes_and_labels_of_the_trace():
    res = checker.check("v5.10", "seed-bug")
    trace = res.violation.trace
    gets = [e for e in ref_events(trace) if e.what == "get"]
    assert gets and all(f"get {e.root} -> {e.count}" in m for e in gets
                        for m in trace[e.step].marks if m.endswith(f"-> {e.count}"))
    for h in holds(trace):
        assert h.lock in trace[h.start].label and trace[h.start].thread == h.thread
        if h.released:
            assert "unlock" in trace[h.end].label and h.lock in trace[h.end].label


def test_repeated_cycles_are_folded():
    cycle = ["t (f) takes a reference on r0 (root_count -> {})", "t (f) yields L",
             "t (f) drops its reference on r0 (root_count -> {})"]
    lines = [(0, "start")]
    for i in range(50):
        lines += [(1 + 3 * i + j, text.format(i + 2)) for j, text in enumerate(cycle)]
    lines.append((999, "t then hits livelock"))
    folded = _fold(lines)
    assert [t for _s, t in folded[1:4]] == [c.format(2) for c in cycle]
    assert folded[4][1] == "... the 3 lines above repeat 49 more times, to step 150"
    assert folded[-1] == (999, "t then hits livelock") and len(folded) == 6


def test_check_explain_prints_the_story():
    proc = subprocess.run([sys.executable, "-m", "tdpmmu.cli", "check", "--kernel", "v5.10",
                           "--scenario", "teardown", "--explain"], capture_output=True,
                          text=True, env={**os.environ, "CI": "1"}, timeout=120)
    assert proc.returncode == 1
    assert "What happened:" in proc.stdout and "then hits BUG" in proc.stdout
