"""Benchmark of the KVM model under the checker.

Prints, side by side from one run:
- per strategy, executions and seconds to the first violation on v5.10 seed-bug;
- for each built-in scenario, a complete dpor run of v5.11: executions, seconds,
  executions per second and the peak memory (RSS) of the process that ran it;
- the same per version from v5.12 on (the later designs), every built-in
  scenario: a dpor run capped by ``--cap N`` executions (default 20000) and
  ``--time-limit S`` seconds (default 600); a capped run says so ("capped"),
  which is a space that does not finish in that budget.

Each measurement runs in a fresh process so that its peak memory is its own.
Usage: .venv/bin/python bench/kvm.py [--quick] [--cap N] [--time-limit S]
  [--versions v5.12,v5.13,...]
"""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
from tdpmmu.checker import check
kernel, scenario, strategy, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
budget = float(sys.argv[5])
t = time.perf_counter()
c = time.process_time()
stop = (lambda: "time limit" if time.perf_counter() - t > budget else None) if budget else None
res = check(kernel, scenario, strategy=strategy, max_executions=limit or None, stop=stop)
elapsed = time.perf_counter() - t
cpu = time.process_time() - c
v = res.violation
print(json.dumps({
    "executions": res.result.executions, "seconds": elapsed, "cpu": cpu,
    "complete": res.result.complete,
    "violation": None if v is None else f"{v.kind}: {v.function}",
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def measure(kernel: str, scenario: str, strategy: str, limit: int = 0,
            budget: float = 0.0) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, kernel, scenario, strategy, str(limit),
                          str(budget)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def option(name: str, default: str) -> str:
    if name in sys.argv:
        return sys.argv[sys.argv.index(name) + 1]
    return default


def outcome(m: dict) -> str:
    if m["violation"] is not None:
        return m["violation"]
    return "verified" if m["complete"] else "capped"


def later_versions(versions: list[str], scenarios: list[str], cap: int, budget: float) -> None:
    """One row per version x scenario: the later designs' cost under dpor."""
    print(f"\nLater versions: dpor per scenario, capped at {cap} executions or "
          f"{budget:.0f} s")
    print(f"{'version':<8} {'scenario':<30} {'result':<44} {'executions':>10} "
          f"{'seconds':>8} {'cpu s':>7} {'peak MB':>8}")
    for version in versions:
        for scenario in scenarios:
            m = measure(version, scenario, "dpor", cap, budget)
            print(f"{version:<8} {scenario:<30} {outcome(m)[:44]:<44} {m['executions']:>10} "
                  f"{m['seconds']:>8.1f} {m['cpu']:>7.1f} {m['peak_rss_mb']:>8.1f}",
                  flush=True)


def main() -> None:
    from tdpmmu.kvm.versions import BUILTIN
    from tdpmmu.scenarios import SEED_SCENARIOS, scenario_names

    quick = "--quick" in sys.argv
    cap = int(option("--cap", "2000" if quick else "20000"))
    budget = float(option("--time-limit", "60" if quick else "600"))
    names = list(BUILTIN)
    default_later = ",".join(names[names.index("v5.12"):])
    versions = [v for v in option("--versions", default_later).split(",") if v]
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
    later_versions(versions, SEED_SCENARIOS[:2] if quick else scenario_names(), cap, budget)


if __name__ == "__main__":
    main()
