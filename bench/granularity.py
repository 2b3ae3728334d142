"""Access granularity: coarse declarations beside fine ones, in one run.

The engine's dependency relation comes from the objects visible operations
declare (``tdpmmu.kvm.shared``).  Until SPTE words, every SPTE of a root was
one object, so two vCPUs faulting different gfns, or a zap and a walk of
disjoint parts of a root, were dependent.  This prints, for each (version,
scenario), a complete ``dpor`` run (capped by ``--cap`` executions and
``--time-limit`` seconds; "capped" says so) under each granularity, each in
its own process: executions, whether the search finished, CPU and wall
seconds, and the ratio of executions.  Nothing is asserted.

``--footprints`` compares, on the scenarios cut at 10,000 executions on the
6.x versions (``CUT``), the footprints as they were before commuting updates
(``coarse``: vCPU exit count, request bits, TLB flushes and dirty bits
declared as writes, a TLB as one object, the memslot-removed check reading
whole roots, a grace period's wait reading whole readers; SPTEs are words in
both) against today's (``fine``).

Usage: .venv/bin/python bench/granularity.py [--cap N] [--time-limit S] [--quick]
                                             [--footprints]
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
CUT = (("v6.9", "huge-split-fault"), ("v6.9", "seed-bug"),
       ("v6.9", "memslot-vs-fault-and-notifier"), ("v6.9", "dirty-log-new-root"),
       ("v6.9", "invalidate-vs-free-under-read-lock"), ("v6.9", "nested-roots-vs-memslot-delete"),
       ("v6.9", "nx-huge-pages-vs-fault"), ("v6.1", "notifier-vs-unload"),
       ("v6.1", "last-root-put"), ("v6.1", "next-root-deleted"),
       ("v6.1", "notifier-yield-vs-last-put"), ("v6.1", "root-added-during-walk"),
       ("v6.1", "destroy-vm-with-queued-zap"))

CHILD = r"""
import json, sys, time
from tdpmmu.checker import check
from tdpmmu.kvm.shared import set_spte_granularity
kernel, scenario, granularity = sys.argv[1], sys.argv[2], sys.argv[3]
cap, budget = int(sys.argv[4]), float(sys.argv[5])
if granularity in ("root", "word"):
    set_spte_granularity(granularity)
elif granularity == "coarse":
    from tdpmmu.engine import set_commuting_updates
    from tdpmmu.kernel.rcu import set_reader_words
    from tdpmmu.kvm.shared import set_check_footprint, set_tlb_granularity
    set_commuting_updates(False)
    set_tlb_granularity("whole")
    set_check_footprint("root")
    set_reader_words(False)
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
    ap.add_argument("--footprints", action="store_true",
                    help="coarse vs fine footprints on the scenarios cut on 6.x")
    args = ap.parse_args()
    pairs = CUT if args.footprints else PAIRS
    if args.quick:
        pairs = pairs[:2]
    kinds = ("coarse", "fine") if args.footprints else ("root", "word")
    print(f"{'version':8} {'scenario':36} {'granularity':11} {'executions':>10} "
          f"{'done':>7} {'cpu s':>8} {'wall s':>8}  ratio")
    for kernel, scenario in pairs:
        rows = {g: run(kernel, scenario, g, args.cap, args.time_limit) for g in kinds}
        for g, r in rows.items():
            ratio = ""
            if g == kinds[1] and r["executions"] and r["complete"]:
                base = rows[kinds[0]]
                more = "" if base["complete"] else ">="  # the coarse search was cut
                ratio = f"{more}{base['executions'] / r['executions']:.1f}x fewer"
            done = "yes" if r["complete"] else "capped"
            if r["violation"]:
                done = r["violation"]
            print(f"{kernel:8} {scenario:36} {g:11} {r['executions']:>10} {done:>7} "
                  f"{r['cpu']:>8.1f} {r['wall']:>8.1f}  {ratio}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
