"""Wall and CPU time of the same bounded work at -j 1 and -j 2, side by side.

Two kinds of work: the matrix (every built-in version x the seed's scenarios,
each check cut at ``--max-executions``), whose checks run side by side, and one
complete source-dpor check, which ``-j 2`` splits into subtrees.  Each runs as the
``tdpmmu`` command a user types; CPU is that of the command and its workers
(children's rusage).  Every work unit replays its prefix from ``setup()`` (as
each serial execution does); on Ray the same holds on every node.

    python bench/parallel.py [--max-executions N] [--kernel K --scenario S]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run(args: list[str]) -> tuple[float, float, dict | list]:
    """Wall and CPU seconds of one command (with its worker processes), and its JSON."""
    env = {**os.environ, "CI": "1"}
    cpu0, start = _children_cpu(), time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "tdpmmu.cli", *args, "--json"],
                         stdout=subprocess.PIPE, text=True, env=env).stdout
    return time.perf_counter() - start, _children_cpu() - cpu0, json.loads(out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--max-executions", default="150")
    p.add_argument("--kernel", default="v5.11")
    p.add_argument("--scenario", default="notifier-vs-unload")
    a = p.parse_args()
    work = {
        f"matrix, {a.max_executions} executions per check":
            ["check", "--max-executions", a.max_executions],
        f"one source-dpor check: {a.kernel} / {a.scenario}":
            ["check", "--kernel", a.kernel, "--scenario", a.scenario, "--strategy",
             "source-dpor"],
    }
    print(f"{'work':<48} {'-j':>3} {'wall s':>8} {'cpu s':>8} {'executions':>11} complete")
    for name, args in work.items():
        for jobs in ("1", "2"):
            wall, cpu, data = run([*args, "-j", jobs])
            rows = data if isinstance(data, list) else [data]
            execs = sum(r["executions"] for r in rows)
            complete = all(r["complete"] for r in rows)
            print(f"{name:<48} {jobs:>3} {wall:8.2f} {cpu:8.2f} {execs:11d} {complete}",
                  flush=True)


if __name__ == "__main__":
    main()
