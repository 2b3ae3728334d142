"""Memory benchmark: peak RSS of one search at N and 5N executions, baseline beside new.

Run as ``.venv/bin/python bench/memory.py`` (``--quick`` for a smoke run).  It
checks a baseline commit (default ``8567fd5``, before optimal DPOR handed its
wakeup subtrees down instead of copying them) out into a temporary ``git
worktree`` and, for each check below, runs a ``dpor`` search capped at
``--executions N`` and at ``5N`` executions, each in a fresh process (so its
peak is its own), with the baseline's code and with this tree's, and
``source-dpor`` with this tree's (source sets keep no wakeup trees: its memory
is the depth of the tree times the threads).  It prints the peak RSS
(``ru_maxrss``), the growth from N to 5N, and the wakeup-tree nodes pending
at the end (optimal DPOR's frontier: the sequences still to explore).

The checks are spaces that do not finish in these caps, so the frontier is
still growing where they stop: the growth measured is what a long cut search
costs.  Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "8567fd5"
CHECKS = (("v5.18", "invalidate-vs-free-under-read-lock"),
          ("v6.1", "memslot-vs-fault-and-notifier"))

CHILD = r"""
import json, resource, sys, time
from tdpmmu.checker import check
from tdpmmu.engine.strategies.dpor import DporStrategy
from tdpmmu.engine.strategies.odpor import OptimalDporStrategy
kernel, scenario, strategy, cap = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
strat = OptimalDporStrategy() if strategy == "dpor" else DporStrategy()
t, c = time.perf_counter(), time.process_time()
res = check(kernel, scenario, strategy=strat, max_executions=cap)
n, stack = 0, [w for node in strat.nodes for w in (getattr(node, "wut", None) or ())]
while stack:
    w = stack.pop()
    n += 1
    stack.extend(w.kids)
print(json.dumps({"executions": res.result.executions, "complete": res.result.complete,
                  "wall": time.perf_counter() - t, "cpu": time.process_time() - c,
                  "pending": n,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _child(src: Path, kernel: str, scenario: str, strategy: str, cap: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run([sys.executable, "-c", CHILD, kernel, scenario, strategy, str(cap)],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{kernel} {scenario} {strategy} under {src} failed:\n"
                         f"{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default=BASELINE, help="baseline commit (default %(default)s)")
    ap.add_argument("--executions", type=int, default=1000,
                    help="the short cap N; the long one is 5N (default %(default)s)")
    ap.add_argument("--quick", action="store_true", help="N = 200")
    args = ap.parse_args(argv)
    n = 200 if args.quick else args.executions
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="tdpmmu-memory-"))
    base = tmp / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(base),
                    args.baseline], check=True, capture_output=True)
    try:
        print(f"tdpmmu memory benchmark (Python {sys.version.split()[0]}; each row a fresh "
              "process; peak RSS = ru_maxrss)")
        print(f"baseline: commit {args.baseline}; new: {ROOT}\n")
        print(f"{'check':46} {'engine':9} {'strategy':12} {'execs':>7} {'RSS MB':>8} "
              f"{'execs':>7} {'RSS MB':>8} {'growth':>8} {'pending':>8} {'CPU s':>7}")
        for kernel, scenario in CHECKS:
            rows = [("baseline", base / "src", "dpor"), ("new", ROOT / "src", "dpor"),
                    ("new", ROOT / "src", "source-dpor")]
            for engine, src, strategy in rows:
                short = _child(src, kernel, scenario, strategy, n)
                long = _child(src, kernel, scenario, strategy, 5 * n)
                print(f"{kernel + ' ' + scenario:46} {engine:9} {strategy:12} "
                      f"{short['executions']:>7,} {short['rss_mb']:>8.1f} "
                      f"{long['executions']:>7,} {long['rss_mb']:>8.1f} "
                      f"{long['rss_mb'] - short['rss_mb']:>+8.1f} {long['pending']:>8,} "
                      f"{long['cpu']:>7.1f}")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                       check=False, capture_output=True)
    print("\n(growth = RSS at 5N minus RSS at N; pending = wakeup-tree nodes left at 5N, "
          "optimal DPOR's frontier, 0 for source-dpor; a search that completes before "
          "its cap shows fewer executions)")
    print(f"total bench time {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
