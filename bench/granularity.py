"""SPTE access granularity: one object per root beside SPTE words, in one run.

The engine's dependency relation comes from the objects visible operations
declare (``tdpmmu.kvm.shared``).  Until SPTE words, every SPTE of a root was
one object, so two vCPUs faulting different gfns, or a zap and a walk of
disjoint parts of a root, were dependent.  This prints, for each (version,
scenario), a complete ``dpor`` run (capped by ``--cap`` executions and
``--time-limit`` seconds; "capped" says so) under each granularity, each in
its own process: executions, whether the search finished, CPU and wall
seconds, and the ratio of executions.  Nothing is asserted.

Usage: .venv/bin/python bench/granularity.py [--cap N] [--time-limit S] [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

PAIRS = (("v5.12", "two-vcpus-fault"), ("v5.13", "notifier-yield-vs-last-put"),
         ("v5.11", "root-added-during-walk"), ("v6.9", "two-vcpus-load-root"),
         ("v6.9", "huge-split-fault"), ("v6.9", "dirty-log-clear"),
         ("v5.11", "seed-bug"))
QUICK = PAIRS[:2]

CHILD = r"""
import json, sys, time
from tdpmmu.checker import check
from tdpmmu.kvm.shared import set_spte_granularity
kernel, scenario, granularity = sys.argv[1], sys.argv[2], sys.argv[3]
cap, budget = int(sys.argv[4]), float(sys.argv[5])
set_spte_granularity(granularity)
t, c = time.perf_counter(), time.process_time()
stop = lambda: "time limit" if time.perf_counter() - t > budget else None
res = check(kernel, scenario, max_executions=cap, stop=stop)
print(json.dumps({"executions": res.result.executions, "complete": res.result.complete,
                  "violation": None if res.violation is None else res.violation.kind,
                  "cpu": time.process_time() - c, "wall": time.perf_counter() - t}))
"""


def run(kernel: str, scenario: str, granularity: str, cap: int, budget: float) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, kernel, scenario, granularity,
                          str(cap), str(budget)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cap", type=int, default=20000)
    ap.add_argument("--time-limit", type=float, default=600.0)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print(f"{'version':8} {'scenario':28} {'granularity':11} {'executions':>10} "
          f"{'done':>7} {'cpu s':>8} {'wall s':>8}  ratio")
    for kernel, scenario in QUICK if args.quick else PAIRS:
        rows = {g: run(kernel, scenario, g, args.cap, args.time_limit) for g in ("root", "word")}
        for g, r in rows.items():
            ratio = ""
            if g == "word" and r["executions"]:
                ratio = f"{rows['root']['executions'] / r['executions']:.1f}x fewer"
            done = "yes" if r["complete"] else "capped"
            if r["violation"]:
                done = r["violation"]
            print(f"{kernel:8} {scenario:28} {g:11} {r['executions']:>10} {done:>7} "
                  f"{r['cpu']:>8.1f} {r['wall']:>8.1f}  {ratio}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
