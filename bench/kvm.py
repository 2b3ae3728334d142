"""Benchmark of the KVM model under the checker.

Prints, side by side from one run:
- per strategy, executions and seconds to the first violation on v5.10 seed-bug;
- for each built-in scenario, a complete dpor run of v5.11: executions, seconds,
  executions per second and the peak memory (RSS) of the process that ran it.

Each measurement runs in a fresh process so that its peak memory is its own.
Usage: .venv/bin/python bench/kvm.py [--quick]
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
from tdpmmu.checker import check
kernel, scenario, strategy, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t = time.perf_counter()
res = check(kernel, scenario, strategy=strategy, max_executions=limit or None)
elapsed = time.perf_counter() - t
v = res.violation
print(json.dumps({
    "executions": res.result.executions, "seconds": elapsed, "complete": res.result.complete,
    "violation": None if v is None else f"{v.kind}: {v.function}",
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def measure(kernel: str, scenario: str, strategy: str, limit: int = 0) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, kernel, scenario, strategy, str(limit)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from tdpmmu.scenarios import SEED_SCENARIOS

    quick = "--quick" in sys.argv
    print("Time to the first violation: v5.10 on seed-bug")
    print(f"{'strategy':<10} {'found':<28} {'executions':>10} {'seconds':>8}")
    for strategy in ("dpor", "dfs", "bounded", "pct", "random"):
        m = measure("v5.10", "seed-bug", strategy, 20000)
        found = m["violation"] or "none within 20000 executions"
        print(f"{strategy:<10} {found:<28} {m['executions']:>10} {m['seconds']:>8.2f}")

    print("\nComplete dpor runs of v5.11")
    print(f"{'scenario':<24} {'result':<10} {'executions':>10} {'seconds':>8} "
          f"{'exec/s':>8} {'peak MB':>8}")
    scenarios = SEED_SCENARIOS[:2] if quick else SEED_SCENARIOS
    for scenario in scenarios:
        m = measure("v5.11", scenario, "dpor")
        result = "verified" if m["complete"] and m["violation"] is None else \
            (m["violation"] or "incomplete")
        print(f"{scenario:<24} {result:<10} {m['executions']:>10} {m['seconds']:>8.2f} "
              f"{m['executions'] / max(m['seconds'], 1e-9):>8.0f} {m['peak_rss_mb']:>8.1f}")
    dfs = measure("v5.11", "teardown", "dfs")
    dpor = measure("v5.11", "teardown", "dpor")
    print(f"\nteardown: dfs {dfs['executions']} executions vs dpor {dpor['executions']} "
          f"(ratio dpor/dfs {dpor['executions'] / dfs['executions']:.5f})")


if __name__ == "__main__":
    main()
