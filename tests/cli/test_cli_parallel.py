"""``tdpmmu check -j N``: checks of the matrix side by side, one check split into
subtrees; the results are those of ``-j 1``."""

from __future__ import annotations

import json

import pytest
from test_cli_main import tdpmmu

BOUNDED = ("--max-executions", "25")


def _rows(stdout: str) -> list[list[str]]:
    """The summary table without its time column."""
    return [line.rsplit(None, 1)[0].split() for line in stdout.splitlines()
            if line.startswith("v5.")]


def test_matrix_j2_equals_j1():
    one = tdpmmu("check", "-j", "1", *BOUNDED, "--json")
    two = tdpmmu("check", "-j", "2", *BOUNDED, "--json")
    assert one.returncode == two.returncode == 1, (one.stderr, two.stderr)
    a, b = json.loads(one.stdout), json.loads(two.stdout)
    assert len(a) == len(b) > 1
    for x, y in zip(a, b, strict=True):
        for key in ("kernel", "scenario", "executions", "complete", "cut_by", "violation"):
            if key == "violation" and x[key] is not None:
                assert (x[key]["kind"], x[key]["schedule"]) == \
                    (y[key]["kind"], y[key]["schedule"])
            else:
                assert x.get(key) == y.get(key), (key, x["kernel"], x["scenario"])


def test_matrix_table_in_matrix_order():
    one = tdpmmu("check", "-j", "1", *BOUNDED, "--kernel", "v5.11")
    two = tdpmmu("check", "-j", "2", *BOUNDED, "--kernel", "v5.11")
    assert _rows(one.stdout) == _rows(two.stdout) and _rows(one.stdout)


def test_one_check_split_across_two_workers():
    args = ("check", "--kernel", "v5.11", "--scenario", "notifier-vs-unload", "--json",
            "--strategy", "source-dpor")
    one = json.loads(tdpmmu(*args, "-j", "1").stdout)
    two = json.loads(tdpmmu(*args, "-j", "2").stdout)
    assert one["complete"] and two["complete"]
    assert one["violation"] is None and two["violation"] is None
    assert one["executions"] <= two["executions"] <= 1.1 * one["executions"]


# Small complete dpor checks (a few hundred executions at most): the optimal
# search split across two workers against -j 1.
DPOR_SPLITS = [("v5.11", "notifier-vs-unload"), ("v5.12", "two-vcpus-fault"),
               ("v6.9", "zap-all-huge-tlb")]


@pytest.mark.parametrize("kernel,scenario", DPOR_SPLITS)
def test_dpor_check_split_equals_j1(kernel, scenario):
    """The default strategy (optimal dpor) split: as complete as -j 1, no
    finding, no sleep-set-blocked execution more, at most 10% more executions."""
    args = ("check", "--kernel", kernel, "--scenario", scenario, "--json")
    one = json.loads(tdpmmu(*args, "-j", "1").stdout)
    two = json.loads(tdpmmu(*args, "-j", "2").stdout)
    assert one["strategy"] == two["strategy"] == "dpor"
    assert one["complete"] and two["complete"]
    assert one["violation"] is None and two["violation"] is None
    assert two["sleep_blocked"] <= one["sleep_blocked"]
    assert one["executions"] <= two["executions"] <= 1.1 * one["executions"]


def test_dpor_split_reports_the_finding_of_j1():
    """v5.10's seed bug: the split dpor search reports the -j 1 finding, with
    the same kind, function and replay token."""
    args = ("check", "--kernel", "v5.10", "--scenario", "seed-bug", "--json")
    one = json.loads(tdpmmu(*args, "-j", "1").stdout)
    two = json.loads(tdpmmu(*args, "-j", "2").stdout)
    assert not one["complete"] and not two["complete"]
    a, b = one["violation"], two["violation"]
    assert a is not None and b is not None
    assert (a["kind"], a.get("function"), a["schedule"]) == \
        (b["kind"], b.get("function"), b["schedule"])


def test_ray_address_without_ray_backend_is_an_error():
    proc = tdpmmu("check", "--ray-address", "127.0.0.1:1", "--kernel", "v5.11",
                  "--scenario", "teardown")
    assert proc.returncode == 2 and "--ray-address applies to --backend ray" in proc.stderr


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    import os
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return out


def _default_sigint() -> None:
    """The CLI under test takes Ctrl-C as a terminal delivers it, even when the
    test run itself was started with SIGINT ignored (a background job of a
    non-interactive shell): an ignored disposition is inherited across exec."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _ctrl_c_a_j2_check(*extra: str, poll: float, settle: float) -> tuple[int, str, str]:
    """Run ``tdpmmu check -j 2`` on v6.9 seed-bug, Ctrl-C it (the whole process
    group, as a terminal does) ``settle`` seconds after its two spawned workers
    exist, and return (exit code, stdout, stderr)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    proc = subprocess.Popen([sys.executable, "-m", "tdpmmu.cli", "check", "-j", "2",
                             "--kernel", "v6.9", "--scenario", "seed-bug", "--json", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CI": "1"}, start_new_session=True,
                            preexec_fn=_default_sigint)
    # Wait for the workers rather than a fixed time: on a loaded machine
    # startup alone can take seconds.
    deadline = time.time() + 60
    while time.time() < deadline and len(_children(proc.pid)) < 2:
        time.sleep(poll)
    time.sleep(settle)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


@pytest.mark.parametrize("strategy", ["dpor", "source-dpor"])
def test_ctrl_c_stops_the_workers_and_prints_what_finished(strategy):
    # Ctrl-C once the spawned workers are up and searching.
    code, out, err = _ctrl_c_a_j2_check("--strategy", strategy, poll=0.2, settle=3)
    assert code == 130, (err, out[:400])
    d = json.loads(out)
    assert d["cut_by"] == "interrupted" and d["complete"] is False
    assert d["executions"] > 0
    assert "Traceback" not in err


def test_ctrl_c_while_the_workers_start_prints_no_traceback():
    """Ctrl-C as soon as the spawned workers exist, while they still import:
    before, a worker died of KeyboardInterrupt mid-import (a traceback in
    stderr, and on a loaded machine a coordinator waiting on the pool)."""
    code, out, err = _ctrl_c_a_j2_check(poll=0.01, settle=0)
    assert code == 130, (err, out[:400])
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


@pytest.mark.parametrize("extra, why", [
    (("--max-executions", "5"), "a search capped by --max-executions"),
    (("--strategy", "pct", "--max-executions", "5"), "a pct search"),
])
def test_j2_on_a_search_it_does_not_split_says_so(extra: tuple[str, ...], why: str) -> None:
    """-j 2 on one check it cannot split is not silently dropped."""
    r = tdpmmu("check", "--kernel", "v5.11", "--scenario", "notifier-vs-unload", "-j", "2",
               *extra)
    assert r.returncode == 0, r.stderr
    assert f"tdpmmu: -j 2 does not split {why}; it runs in one process" in r.stderr


BUG_IN_SETUP = '''
from tdpmmu.kernel import BUG_ON
from tdpmmu.kvm.versions import V5_11


class BugInLoad(V5_11):
    name = "v5.11+bug-in-load"

    def kvm_mmu_load(self, vcpu):
        BUG_ON(True)
'''


def test_a_finding_in_setup_is_reported_by_a_split_search_as_by_one_process(tmp_path):
    """seed-bug loads vcpu0's root in its setup: the BUG holds in every
    execution.  A split search's worker sent it back as an exception that did
    not unpickle (the pool broke, a traceback)."""
    f = tmp_path / "bug.py"
    f.write_text(BUG_IN_SETUP)
    one = tdpmmu("check", "--kernel", str(f), "--scenario", "seed-bug", "-j", "1", "--json")
    two = tdpmmu("check", "--kernel", str(f), "--scenario", "seed-bug", "-j", "2", "--json")
    assert one.returncode == two.returncode == 1, two.stderr
    a, b = json.loads(one.stdout), json.loads(two.stdout)
    assert a["violation"]["message"] == b["violation"]["message"] == \
        "kernel BUG at bug.py: kvm_mmu_load"
    assert (a["executions"], a["complete"]) == (b["executions"], b["complete"])
