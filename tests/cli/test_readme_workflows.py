"""The README's workflows work as printed, and its example output is what the tool
prints today (the lines it shows, at the width it says)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = (Path(__file__).parents[2] / "README.md").read_text()


def block(first_line: str) -> str:
    """The fenced code block whose first line is ``first_line``."""
    m = re.search(r"```\w*\n(" + re.escape(first_line) + r"\n.*?)```", README, re.S)
    assert m, first_line
    return m.group(1)


def tdpmmu(*args: str, cwd: Path, columns: int = 100) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tdpmmu.cli", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "CI": "1", "COLUMNS": str(columns)})


def test_first_screen_keeps_its_two_commands():
    head = README.split("## ")[0]
    commands = re.findall(r"```sh\n(.*?)\n```", head, re.S)
    assert commands == [
        "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/tdpmmu check",
        "python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && .venv/bin/ruff "
        "check . && .venv/bin/pytest"]


def test_example_report_lines_are_what_the_tool_prints(tmp_path):
    # -j 1: with several workers the executions are counted across them
    shown = block("$ tdpmmu check --kernel v5.10 --scenario seed-bug -j 1     # abridged, at "
                  "120 columns").splitlines()[1:]
    out = tdpmmu("check", "--kernel", "v5.10", "--scenario", "seed-bug", "-j", "1",
                 cwd=tmp_path, columns=120).stdout.splitlines()
    timeless = [re.sub(r"in \d+\.\d+ s", "in T s", line) for line in out]
    for line in shown:
        if line.strip() == "...":
            continue
        assert re.sub(r"in \d+\.\d+ s", "in T s", line) in timeless, line


def test_variant_workflow(tmp_path):
    (tmp_path / "my_patch.py").write_text(block("# my_patch.py"))
    proc = tdpmmu("check", "--kernel", "my_patch.py", "--scenario", "seed-bug", "--explain",
                  cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == \
        "BUG: KASAN: use-after-free in kvm_tdp_mmu_zap_gfn_range"
    story = block("What happened:").rstrip("\n")
    assert story in proc.stdout


def test_scenario_workflow(tmp_path):
    (tmp_path / "mine.toml").write_text(block("# mine.toml"))
    show = tdpmmu("show", "mine.toml", cwd=tmp_path)
    assert show.returncode == 0 and "Thread vcpu0: vcpu_run" in show.stdout
    proc = tdpmmu("check", "--kernel", "v5.10", "--scenario", "mine.toml", "--json",
                  cwd=tmp_path)
    assert proc.returncode == 1
    assert '"finding": "BUG"' in proc.stdout


def test_pytest_workflow(pytester: pytest.Pytester):
    pytester.makepyfile(test_my_patch=block("# test_my_patch.py"))
    pytester.runpytest("test_my_patch.py").assert_outcomes(passed=2)


def test_every_built_in_version_is_named_in_the_readme():
    from tdpmmu.kvm.versions import BUILTIN
    missing = [name for name in BUILTIN if f"`{name}`" not in README]
    assert not missing, f"README names no `{missing}`"
