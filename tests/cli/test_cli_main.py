"""The ``tdpmmu`` command line, run as a subprocess: exit codes, one-line errors,
the JSON report and the replay command a report ends with."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tdpmmu.scenarios import scenario_names


def tdpmmu(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": "1"}
    return subprocess.run([sys.executable, "-m", "tdpmmu.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120, cwd=cwd)


def assert_bad_input(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 2, exactly one line on stderr, ``tdpmmu: error: ...``, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("tdpmmu: error: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


@pytest.fixture(scope="module")
def seed_bug_json_proc() -> subprocess.CompletedProcess[str]:
    proc = tdpmmu("check", "--kernel", "v5.10", "--scenario", "seed-bug", "--json")
    assert proc.returncode == 1, proc.stderr
    return proc


@pytest.fixture(scope="module")
def seed_bug_json(seed_bug_json_proc) -> dict:
    """The JSON document printed on stdout (nothing else is printed)."""
    return json.loads(seed_bug_json_proc.stdout)


@pytest.fixture(scope="module")
def seed_bug_text() -> str:
    proc = tdpmmu("check", "--kernel", "v5.10", "--scenario", "seed-bug")
    assert proc.returncode == 1, proc.stderr
    return proc.stdout


# ---------------------------------------------------------------- bad input
def test_unknown_kernel():
    line = assert_bad_input(tdpmmu("check", "--kernel", "v9.9", "--scenario", "seed-bug"),
                            "unknown kernel 'v9.9'")
    assert "v5.11" in line


def test_missing_variant_file(tmp_path):
    spec = str(tmp_path / "patch.py")
    assert_bad_input(tdpmmu("check", "--kernel", spec, "--scenario", "seed-bug"),
                     f"{spec}: no such variant file")


def test_broken_variant_file(tmp_path):
    f = tmp_path / "patch.py"
    f.write_text("from tdpmmu.kvm.versions import V5_11\nclass P(V5_11)\n    pass\n")
    assert_bad_input(tdpmmu("check", "--kernel", str(f), "--scenario", "seed-bug"),
                     f"{f}:2: syntax error")


def test_unknown_scenario():
    line = assert_bad_input(tdpmmu("check", "--kernel", "v5.11", "--scenario", "no-such"),
                            "unknown scenario 'no-such'")
    assert "seed-bug" in line


def test_bad_scenario_file(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('name = "mine"\n[[thread]]\nname = "host"\n'
                 'actions = [ { op = "teleport" } ]\n')
    assert_bad_input(tdpmmu("check", "--kernel", "v5.11", "--scenario", str(f)),
                     f"{f}: thread 'host' action 0: unknown op 'teleport'")


def test_scenario_file_with_toml_syntax_error(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('name = "mine"\n[[thread]\n')
    assert_bad_input(tdpmmu("check", "--kernel", "v5.11", "--scenario", str(f)),
                     f"{f}: not valid TOML")


def test_binary_scenario_file(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xff")
    assert_bad_input(tdpmmu("check", "--kernel", "v5.11", "--scenario", str(f)), f"{f}: ")


@pytest.mark.parametrize(("knob", "fragment"), [
    ("nosuch=1", "--knob 'nosuch=1'"),
    ("new-root", "--knob 'new-root'"),
    ("new-root=sideways", "unknown choice 'sideways'"),
])
def test_bad_knob(knob, fragment):
    assert_bad_input(tdpmmu("check", "--kernel", "v5.11", "--scenario", "seed-bug",
                            "--knob", knob), fragment)


def test_knob_for_code_the_kernel_lacks():
    # next-root is about v5.11's yield-safe walk; v5.10 has no such code.
    assert_bad_input(tdpmmu("check", "--kernel", "v5.10", "--scenario", "seed-bug",
                            "--knob", "next-root=before-body"), "--knob next-root")


def test_prove_mmu_on_a_version_without_the_option():
    # CONFIG_KVM_PROVE_MMU came in 6.6: v6.4 has no such Kconfig option.
    assert_bad_input(tdpmmu("check", "--kernel", "v6.4", "--scenario", "seed-bug",
                            "--prove-mmu"), "--prove-mmu", "v6.4", "CONFIG_KVM_PROVE_MMU")


def test_prove_mmu_runs_and_its_replay_line_keeps_it(tmp_path):
    variant = tmp_path / "double_yield.py"
    variant.write_text(
        "from tdpmmu.kvm.versions import V6_18\n\n\n"
        "class DoubleYield(V6_18):\n"
        "    name = 'v6.18+double-yield'\n\n"
        "    def tdp_mmu_iter_cond_resched(self, kvm, it, flush=False, shared=False):\n"
        "        if super().tdp_mmu_iter_cond_resched(kvm, it, flush, shared):\n"
        "            super().tdp_mmu_iter_cond_resched(kvm, it, False, shared)\n"
        "            return True\n"
        "        return False\n")
    off = tdpmmu("check", "--kernel", str(variant), "--scenario", "seed-bug",
                 "--max-executions", "100", "-j", "1")
    assert off.returncode == 0, off.stdout + off.stderr
    on = tdpmmu("check", "--kernel", str(variant), "--scenario", "seed-bug",
                "--max-executions", "100", "-j", "1", "--prove-mmu")
    assert on.returncode == 1, on.stdout + on.stderr
    assert "tdp_mmu_iter_cond_resched" in on.stdout
    assert "--knob KVM_PROVE_MMU=y" in on.stdout


def test_unknown_strategy():
    assert_bad_input(tdpmmu("check", "--kernel", "v5.10", "--scenario", "seed-bug",
                            "--strategy", "bfs"), "--strategy", "bfs")


@pytest.mark.parametrize("n", ["0", "-3", "many"])
def test_bad_max_executions(n):
    assert_bad_input(tdpmmu("check", "--kernel", "v5.10", "--scenario", "seed-bug",
                            "--max-executions", n), "--max-executions")


def test_unknown_command():
    assert_bad_input(tdpmmu("verify"))


def test_replay_needs_a_schedule():
    assert_bad_input(tdpmmu("replay", "--kernel", "v5.10", "--scenario", "seed-bug"),
                     "--schedule")


@pytest.mark.parametrize(("token", "fragment"), [
    ("garbage", "must start with 's1.'"),
    ("s1.!!!!", "corrupt"),
    ("s1.eNpjEGFiZ2BhYgQAANQAJ", "corrupt"),
    ("s1.AAAA", "corrupt"),
])
def test_corrupt_schedule_token(token, fragment):
    assert_bad_input(tdpmmu("replay", "--kernel", "v5.10", "--scenario", "seed-bug",
                            "--schedule", token), "--schedule", fragment)


def test_schedule_token_from_another_scenario(seed_bug_json):
    token = seed_bug_json["violation"]["schedule"]
    assert_bad_input(tdpmmu("replay", "--kernel", "v5.10", "--scenario", "teardown",
                            "--schedule", token),
                     "--schedule does not fit kernel v5.10 on scenario teardown")


# ------------------------------------------------------------------- list
def test_list():
    proc = tdpmmu("list")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    out = proc.stdout
    for name in ("v5.10", "v5.10-fix-v1", "v5.11"):
        assert f"  {name} " in out
    names = scenario_names()
    for name in ("seed-bug", "notifier-vs-unload", "next-root-deleted",
                 "root-added-during-walk", "dirty-log-new-root", "teardown"):
        assert name in names
        assert f"  {name} " in out
    assert "dfs" in out and "dpor" in out


# ------------------------------------------------------------- check/replay
def test_json_report_of_the_seed_bug(seed_bug_json):
    d = seed_bug_json
    assert d["kernel"] == "v5.10"
    assert d["scenario"] == "seed-bug"
    assert d["strategy"] == "dpor"
    assert isinstance(d["executions"], int) and d["executions"] >= 1
    assert isinstance(d["complete"], bool)
    assert isinstance(d["elapsed_s"], (int, float)) and d["elapsed_s"] >= 0
    v = d["violation"]
    assert v["kind"] == "BUG"
    assert v["message"] == "kernel BUG at arch/x86/kvm/mmu/mmu_internal.h: kvm_mmu_get_root"
    assert v["function"] == "kvm_mmu_get_root"
    assert v["schedule"].startswith("s1.")
    assert isinstance(v["trace"], list) and v["trace"]
    threads = {step["thread"] for step in v["trace"]}
    assert threads == {"host", "vcpu0"}


def test_json_output_is_exactly_one_json_document(seed_bug_json_proc):
    data = json.loads(seed_bug_json_proc.stdout)
    assert data["violation"]["kind"] == "BUG"


def test_json_report_without_violation():
    proc = tdpmmu("check", "--kernel", "v5.11", "--scenario", "seed-bug", "--json",
                  "--max-executions", "3")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["violation"] is None
    assert d["executions"] == 3 and d["complete"] is False


def test_text_report_ends_with_a_replay_command_that_reproduces_it(seed_bug_text):
    lines = seed_bug_text.rstrip("\n").splitlines()
    first = lines[0]
    assert first == "kernel BUG at arch/x86/kvm/mmu/mmu_internal.h: kvm_mmu_get_root"
    argv = shlex.split(lines[-1])
    assert argv[0] == "tdpmmu" and argv[1] == "replay"
    assert "--schedule" in argv
    proc = tdpmmu(*argv[1:])
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines()[0] == first


def test_replay_of_the_json_token_gives_the_same_violation(seed_bug_json):
    v = seed_bug_json["violation"]
    proc = tdpmmu("replay", "--kernel", "v5.10", "--scenario", "seed-bug",
                  "--schedule", v["schedule"], "--json")
    assert proc.returncode == 1, proc.stderr
    r = json.loads(proc.stdout)["violation"]
    assert (r["kind"], r["message"], r["function"]) == (v["kind"], v["message"],
                                                         v["function"])
    assert len(r["trace"]) == len(v["trace"])


def test_user_scenario_file_runs(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('name = "mine"\n'
                 '[[memslot]]\nid = 0\nbase_gfn = 0\nnpages = 4\nhva = 0x100\n'
                 '[[thread]]\nname = "vcpu0"\n'
                 'actions = [ { op = "vcpu_run", vcpu = 0, guest = ["write 0x1"] } ]\n')
    proc = tdpmmu("check", "--kernel", "v5.11", "--scenario", str(f), "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["scenario"] == "mine" and d["violation"] is None and d["complete"] is True


def test_kernel_all_runs_every_version_over_every_scenario():
    """``--kernel all`` is the whole matrix: each built-in version once per built-in
    scenario (bounded here to one execution per check; the pairs are what counts)."""
    from tdpmmu.kvm.versions import BUILTIN
    proc = tdpmmu("check", "--kernel", "all", "--max-executions", "1", "--json", "-j", "1")
    assert proc.returncode in (0, 1), proc.stderr
    pairs = [(r["kernel"], r["scenario"]) for r in json.loads(proc.stdout)]
    assert pairs == [(k, s) for k in BUILTIN for s in scenario_names()]


def test_scenario_all_with_named_versions_and_no_duplicates():
    proc = tdpmmu("check", "--kernel", "v5.11", "--kernel", "v5.11", "--scenario", "all",
                  "--scenario", "seed-bug", "--max-executions", "1", "--json", "-j", "1")
    assert proc.returncode in (0, 1), proc.stderr
    pairs = [(r["kernel"], r["scenario"]) for r in json.loads(proc.stdout)]
    assert pairs == [("v5.11", s) for s in scenario_names()]
