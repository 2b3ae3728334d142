"""The text report as a terminal user meets it: it fits 80 columns by wrapping,
never cuts a lock name or an address, puts each note on its step's row naming
the function that did it, and leaves the scenario harness out of call traces."""

from __future__ import annotations

import re

import pytest

from tdpmmu import checker
from tdpmmu.report import violation_report
from tdpmmu.report.text import summary_lines


@pytest.fixture(scope="module")
def seed_bug():
    return checker.check("v5.10", "seed-bug")


def rows(report: str) -> dict[int, str]:
    """Step number -> the text of its row (continuation lines joined)."""
    out: dict[int, list[str]] = {}
    current = None
    for line in report.splitlines():
        m = re.match(r"^\s*(\d+) \|", line)
        if m:
            current = int(m.group(1))
            out[current] = []
        elif not re.match(r"^\s+\|", line):
            current = None
        if current is not None:
            out[current].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def cell_text(block: str, column: int) -> str:
    """One column of a row block, its wrapped lines joined by spaces."""
    return " ".join(line.split("|")[column].strip() for line in block.splitlines()).strip()


def test_report_fits_80_columns_without_cutting(seed_bug, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    text = violation_report(seed_bug)
    replay = text.splitlines()[-1]
    assert replay.strip().startswith("tdpmmu replay")  # one line, to copy
    table = text.split("Replay:")[0].splitlines()
    long = [line for line in table if len(line) > 80]
    assert long == [], long
    assert "…" not in text
    by_step = rows(text)
    threads = seed_bug.thread_names
    for st in seed_bug.violation.trace:
        cell = cell_text(by_step[st.index], 1 + threads.index(st.thread))
        for fact in re.findall(r"\w+\([^)]*\)", st.label):
            # one piece on one line when it has no space; else wrapped only at spaces
            assert fact in (text if " " not in fact else cell), (fact, cell)


def test_notes_sit_on_their_steps_row_and_name_the_function(seed_bug, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    by_step = rows(violation_report(seed_bug))
    for st in seed_bug.violation.trace:
        for mark in st.marks:
            if " -> " in mark:
                function, _, what = mark.partition(": ")
                cell = cell_text(by_step[st.index], 1 + seed_bug.thread_names.index(st.thread))
                assert f"+ {function}: {what}" in cell, (st.index, mark, cell)
    assert "kvm_tdp_mmu_zap_gfn_range: get r0 -> 2" in " ".join(str(m) for st in
                                                                seed_bug.violation.trace
                                                                for m in st.marks)


def test_harness_frames_are_not_in_call_traces():
    res = checker.check("v5.10", "teardown")
    text = violation_report(res, width=120)
    trace = text.split("Call Trace:")[1].split("\n\n")[0].split()
    assert trace[0] == "kvm_mmu_get_root" and "kvm_destroy_vm" in trace
    for harness in ("do_destroy_vm", "do_zap_all", "_run_action", "thread"):
        assert harness not in trace
    assert any(d.strip() == "do_destroy_vm" for d in res.violation.details)  # raw kept


def test_summary_row_wraps_the_result_instead_of_cutting_it():
    res = checker.check("v5.10-fix-v1", "seed-bug", kasan=False)
    lines = summary_lines(res, first=True, width=80)
    assert all(len(line) <= 80 for line in lines)
    assert "0xdead000000000100" in " ".join(lines)
