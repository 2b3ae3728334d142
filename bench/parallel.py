"""Wall and CPU time of the same work at -j 1 and -j 2, side by side.

Three kinds of work: the matrix (every built-in version x the seed's scenarios,
each check cut at ``--max-executions``), whose checks run side by side; one
complete source-dpor check; and complete checks with the default strategy
(optimal dpor, wakeup trees), which ``-j 2`` splits into subtrees (units),
and one dpor check too big to finish, cut by ``--time-limit`` (its executions
in that time compare the throughput; a check cut by ``--max-executions`` is
not split).
Each runs as the ``tdpmmu`` command a user types; CPU is that of the command
and its workers (children's rusage).  Every work unit replays its prefix from
``setup()`` (as each serial execution does); on Ray the same holds on every
node.  On a Linux machine shared with other sessions, autogroup scheduling
(``/proc/sys/kernel/sched_autogroup_enabled``) gives all processes of one
session (the command and its workers) one share of the CPUs: there ``-j 2``
gets no more CPU per second than ``-j 1`` and wall time cannot drop; the CPU
and execution ratios still show the split's cost.  Printed per work: wall
and CPU seconds, executions, complete, and for -j 2 the ratios to -j 1 (wall
speed-up, CPU and executions overhead).

    python bench/parallel.py [--max-executions N] [--kernel K --scenario S]
                             [--dpor K:S,K:S,...] [--capped K:S:SECONDS] [--only-dpor]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

# Complete dpor checks of 15-40 s on one (shared) core of the benchmark machine.
DPOR_CHECKS = "v6.9:notifier-vs-unload,v6.9:root-added-during-walk,v6.18:notifier-vs-unload"


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
    p.add_argument("--dpor", default=DPOR_CHECKS, metavar="K:S,...",
                   help=f"complete dpor checks to split (default: {DPOR_CHECKS})")
    p.add_argument("--capped", default="v5.11:seed-bug:30", metavar="K:S:SECONDS",
                   help="a dpor check too big to finish, cut by --time-limit SECONDS: its "
                   "executions in that time at -j 1 and -j 2 (default: v5.11:seed-bug:30; "
                   "'' for none)")
    p.add_argument("--only-dpor", action="store_true", help="only the dpor checks")
    a = p.parse_args()
    work: dict[str, list[str]] = {}
    if not a.only_dpor:
        work[f"matrix, {a.max_executions} executions per check"] = \
            ["check", "--max-executions", a.max_executions]
        work[f"one source-dpor check: {a.kernel} / {a.scenario}"] = \
            ["check", "--kernel", a.kernel, "--scenario", a.scenario, "--strategy",
             "source-dpor"]
    for spec in filter(None, a.dpor.split(",")):
        kernel, _, scenario = spec.partition(":")
        work[f"one dpor check: {kernel} / {scenario}"] = \
            ["check", "--kernel", kernel, "--scenario", scenario]
    if a.capped:
        kernel, scenario, seconds = a.capped.split(":")
        work[f"dpor {kernel} / {scenario}, --time-limit {seconds}"] = \
            ["check", "--kernel", kernel, "--scenario", scenario, "--time-limit", seconds]
    print(f"{'work':<52} {'-j':>3} {'wall s':>8} {'cpu s':>8} {'executions':>11} "
          f"{'complete':>8}  -j 2 / -j 1")
    for name, args in work.items():
        base = None
        for jobs in ("1", "2"):
            wall, cpu, data = run([*args, "-j", jobs])
            rows = data if isinstance(data, list) else [data]
            execs = sum(r["executions"] for r in rows)
            complete = all(r["complete"] for r in rows)
            ratio = ""
            if base is None:
                base = (wall, cpu, execs)
            else:
                ratio = (f"wall x{base[0] / wall:.2f} faster, cpu x{cpu / base[1]:.2f}, "
                         f"executions x{execs / base[2]:.3f}")
            print(f"{name:<52} {jobs:>3} {wall:8.2f} {cpu:8.2f} {execs:11d} "
                  f"{complete!s:>8}  {ratio}", flush=True)


if __name__ == "__main__":
    main()
