"""Scale benchmark: the baseline commit's engine beside today's, in one run.

Run as ``.venv/bin/python bench/scale.py`` (``--quick`` for a smoke run).  It
checks the baseline commit (default ``33743cb``, the commit issue 8 measured)
out into a temporary ``git worktree`` and runs the same measurements with its
code and with this tree's, one after the other, each in its own process on one
core (``-j 1``), on this machine:

  (a) a fixed bounded piece of the main job: ``dpor`` on v5.10, v5.10-fix-v1
      and v5.11 x the seed's scenarios, at most ``--executions`` executions
      per check (default 100), KASAN off and panic_on_warn on for both (the
      baseline's defaults), with whatever minimisation and trace replay a
      finding costs;
  (b) the dpor executions / Mazurkiewicz traces ratio (and sleep-set-blocked
      executions) of lastzero(4), lastzero(5), indexer and locked counters
      (the programs of ``bench/engine.py``, the baseline's own copy for the
      baseline), traces counted by ``tests/engine/trace_counter.py``.

For (a) it prints CPU and wall time, visible operations (steps of every
execution, replayed prefixes included), CPU per visible operation,
executions per second, and the share of steps that re-ran an already explored
prefix (replayed from ``setup()`` to reach a backtrack point).  Timing is
``time.process_time`` of the worker process; the machine may be shared, so
wall time is shown beside CPU time.  Nothing is asserted.
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
BASELINE = "33743cb"
KERNELS = ("v5.10", "v5.10-fix-v1", "v5.11")
SCENARIOS = ("seed-bug", "notifier-vs-unload", "next-root-deleted", "root-added-during-walk",
             "dirty-log-new-root", "teardown")


# ------------------------------------------------------------------ the worker
def _instrument() -> dict[str, int]:
    """Count steps and replayed decisions in whatever engine is imported."""
    from tdpmmu.engine import runtime
    from tdpmmu.engine.strategies import tree

    counts = {"steps": 0, "replayed": 0, "executions": 0}
    run = runtime.Execution.run

    def counted_run(self: Any) -> None:
        try:
            run(self)
        finally:
            counts["steps"] += self.nsteps
            counts["executions"] += 1

    runtime.Execution.run = counted_run
    restart = tree.TreeStrategy._restart

    def counted_restart(self: Any) -> bool:
        more = restart(self)
        counts["replayed"] += max(self.branch, 0)  # decisions before the new one re-run
        return more

    tree.TreeStrategy._restart = counted_restart
    return counts


def worker_main_job(executions: int) -> dict[str, Any]:
    from tdpmmu import checker
    counts = _instrument()
    rows = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for k in KERNELS:
        for s in SCENARIOS:
            r = checker.check(k, s, strategy="dpor", max_executions=executions, kasan=False,
                              panic_on_warn=True).result
            v = r.violation
            rows.append([k, s, r.executions, r.complete, None if v is None else v.kind])
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"cpu": cpu, "wall": wall, "rows": rows, **counts}


def worker_ratios(bench_dir: str, strategies: list[str]) -> dict[str, Any]:
    sys.path.insert(0, bench_dir)
    import engine as models  # bench/engine.py of the tree under test
    from tdpmmu.engine import explore
    programs = [models.lastzero(4), models.lastzero(5), models.indexer(4, size=8, msgs=2),
                models.locked_counter(3, 2), models.locked_counter(2, 3)]
    out = []
    for prog in programs:
        for strategy in strategies:
            t0 = time.process_time()
            r = explore(prog.setup, prog.threads, strategy=strategy, check=prog.check,
                        max_steps=100_000)
            out.append([prog.name, strategy, r.executions, r.sleep_blocked, r.complete,
                        time.process_time() - t0])
    return {"rows": out}


def worker_traces(bench_dir: str) -> dict[str, Any]:
    sys.path.insert(0, bench_dir)
    sys.path.insert(0, str(ROOT / "tests" / "engine"))
    from trace_counter import count_traces

    import engine as models
    programs = [models.lastzero(4), models.lastzero(5), models.indexer(4, size=8, msgs=2),
                models.locked_counter(3, 2), models.locked_counter(2, 3)]
    return {"traces": {p.name: count_traces(p.setup, p.threads)[0] for p in programs}}


# ------------------------------------------------------------------ the driver
def _run_worker(src: Path, args: list[str]) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run([sys.executable, __file__, "--worker", *args], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"worker {args} under {src} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _baseline_tree(commit: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where),
                    commit], check=True, capture_output=True)
    return where


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default=BASELINE, help="baseline commit (default %(default)s)")
    ap.add_argument("--executions", type=int, default=100,
                    help="max executions per check of the main-job piece (default %(default)s)")
    ap.add_argument("--quick", action="store_true", help="20 executions per check")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        what, *rest = args.worker
        if what == "main":
            res = worker_main_job(int(rest[0]))
        elif what == "ratios":
            res = worker_ratios(rest[0], rest[1:])
        else:
            res = worker_traces(rest[0])
        print(json.dumps(res))
        return 0

    executions = 20 if args.quick else args.executions
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="tdpmmu-baseline-"))
    base = _baseline_tree(args.baseline, tmp / "tree")
    try:
        print(f"tdpmmu scale benchmark (Python {sys.version.split()[0]}, one worker process "
              f"each, this machine, {os.cpu_count()} cores seen)")
        print(f"baseline: commit {args.baseline} checked out in {base}")
        print(f"new:      {ROOT} (HEAD {_head()})\n")
        print(f"(a) main-job piece: dpor, {', '.join(KERNELS)} x {len(SCENARIOS)} seed "
              f"scenarios, max {executions} executions per check, KASAN off")
        old = _run_worker(base / "src", ["main", str(executions)])
        new = _run_worker(ROOT / "src", ["main", str(executions)])
        _main_table(old, new)
        print("\n(b) dpor executions per Mazurkiewicz trace (traces: tests/engine/"
              "trace_counter.py)")
        traces = _run_worker(ROOT / "src", ["traces", str(ROOT / "bench")])["traces"]
        old_r = _run_worker(base / "src", ["ratios", str(base / "bench"), "dpor"])["rows"]
        new_r = _run_worker(ROOT / "src", ["ratios", str(ROOT / "bench"), "dpor",
                                           "source-dpor"])["rows"]
        _ratio_table(traces, old_r, new_r)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)],
                       check=False, capture_output=True)
    print(f"\ntotal bench time {time.perf_counter() - start:.0f} s")
    return 0


def _head() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or "?"


def _main_table(old: dict[str, Any], new: dict[str, Any]) -> None:
    head = (f"  {'engine':9} {'executions':>10} {'vis.ops':>10} {'CPU s':>7} {'wall s':>7} "
            f"{'CPU us/op':>10} {'exec/s':>8} {'re-run':>7}")
    print(head)
    for name, m in (("baseline", old), ("new", new)):
        per_op = m["cpu"] / max(m["steps"], 1) * 1e6
        rerun = m["replayed"] / max(m["steps"], 1)
        print(f"  {name:9} {m['executions']:>10,} {m['steps']:>10,} {m['cpu']:>7.2f} "
              f"{m['wall']:>7.2f} {per_op:>10.2f} {m['executions'] / m['cpu']:>8.0f} "
              f"{rerun:>7.1%}")
    ratio = (old["cpu"] / old["steps"]) / (new["cpu"] / new["steps"])
    print(f"  CPU per visible operation: {ratio:.2f}x lower than the baseline's; CPU of "
          f"the whole piece: {old['cpu'] / new['cpu']:.2f}x lower")
    same = [(a[:2], a[4], b[4]) for a, b in zip(old["rows"], new["rows"], strict=True)
            if a[4] != b[4]]
    print("  findings per check: " + ("the same kinds" if not same else f"DIFFER: {same}"))
    print("  (executions include minimisation and the traced replay of a finding; the "
          "optimal dpor\n   may need fewer executions than the baseline for a complete "
          "check; re-run = replayed\n   decisions / steps)")


def _ratio_table(traces: dict[str, int], old: list, new: list) -> None:
    print(f"  {'program':34} {'traces':>7} {'engine':9} {'strategy':12} {'execs':>6} "
          f"{'blocked':>7} {'execs/traces':>12}")
    for label, rows in (("baseline", old), ("new", new)):
        for name, strategy, ex, blocked, complete, _cpu in rows:
            t = traces.get(name)
            ratio = f"{ex / t:.2f}" if t else "?"
            done = "" if complete else " (incomplete)"
            print(f"  {name:34} {t:>7} {label:9} {strategy:12} {ex:>6} {blocked:>7} "
                  f"{ratio:>12}{done}")


if __name__ == "__main__":
    raise SystemExit(main())
