"""A ``-j N`` worker dies with its coordinator (Linux ``PR_SET_PDEATHSIG``):
a ``kill -9`` of the CLI, or a test's timeout, leaves no search running on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux prctl")


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after ')'
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_die_when_the_coordinator_is_killed():
    # A search that runs for minutes, split over two workers.
    cli = subprocess.Popen([sys.executable, "-m", "tdpmmu.cli", "check", "--kernel", "v6.18",
                            "--scenario", "memslot-vs-fault-and-notifier", "-j", "2"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        workers: list[int] = []
        while time.monotonic() < deadline and len(workers) < 2:
            time.sleep(0.5)
            workers = [p for p in _children(cli.pid)
                       if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()
                       and b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) >= 2, "the workers did not start"
    finally:
        os.kill(cli.pid, signal.SIGKILL)
        cli.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.2)
    left = [p for p in workers if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, f"workers {left} outlived their coordinator"
