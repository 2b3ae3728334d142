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
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "33743cb"
LANDED = "9a3067b"  # main when the snapshots and the replay-prefix invariant skip began
KERNELS = ("v5.10", "v5.10-fix-v1", "v5.11")
BIG = (("v5.11", "notifier-vs-unload-2vcpu.toml"), ("v5.13", "read-lock-faults.toml"))
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


def _cpu() -> float:
    """CPU time of this process and of its waited-for children (snapshot processes)."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def worker_main_job(executions: int, snapshots: bool = False) -> dict[str, Any]:
    from tdpmmu import checker
    counts = _instrument()
    rows = []
    run_steps = replayed = forks = 0
    cpu0, wall0 = _cpu(), time.perf_counter()
    for k in KERNELS:
        for s in SCENARIOS:
            kw = {"snapshots": True} if snapshots else {}
            r = checker.check(k, s, strategy="dpor", max_executions=executions, kasan=False,
                              panic_on_warn=True, **kw).result
            v = r.violation
            rows.append([k, s, r.executions, r.complete, None if v is None else v.kind])
            run_steps += getattr(r, "steps", 0)
            replayed += getattr(r, "replayed_steps", 0)
            forks += getattr(r, "snapshot_forks", 0)
    cpu, wall = _cpu() - cpu0, time.perf_counter() - wall0
    out = {"cpu": cpu, "wall": wall, "rows": rows, **counts}
    if snapshots:  # the executions ran in forked processes the counters cannot see
        out.update(run_steps=run_steps, replayed=replayed, forks=forks)
    return out


def cli_run(args: list[str]) -> dict[str, Any]:
    """``tdpmmu check ARGS`` in a subprocess: wall time and CPU of the whole
    process tree (workers and snapshot processes are waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "tdpmmu.cli", "check", *args], capture_output=True,
                         text=True, check=False, env=dict(os.environ, CI="1"))
    wall = time.perf_counter() - wall0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    execs = sum(int(m) for m in re.findall(r"^\S+\s+\S+\s+(\d+)\s+[\d.]+$", out.stdout,
                                           re.MULTILINE))
    if not execs:  # the baseline's table: result text, then executions and time
        execs = sum(int(m) for m in re.findall(r"^v\S+\s+\S+\s+.*?\s(\d+)\s+[\d.]+$",
                                               out.stdout, re.MULTILINE))
    if not execs:  # one check: its summary line
        execs = sum(int(m) for m in re.findall(r"(\d+) executions", out.stdout))
    return {"wall": wall, "cpu": cpu, "code": out.returncode, "executions": execs,
            "tail": out.stdout.strip().splitlines()[-12:] + out.stderr.strip().splitlines()[-5:]}


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
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:  # its arguments may look like options (tdpmmu check's)
        return _worker(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default=BASELINE, help="baseline commit (default %(default)s)")
    ap.add_argument("--executions", type=int, default=100,
                    help="max executions per check of the main-job piece (default %(default)s)")
    ap.add_argument("--quick", action="store_true", help="20 executions per check")
    ap.add_argument("--landed", default=LANDED, metavar="COMMIT",
                    help="also measure this commit's engine, the one this work started from "
                    "(default %(default)s; '' for none)")
    ap.add_argument("--big", action="store_true",
                    help="also run the three/four-thread scenarios to the end (minutes)")
    args = ap.parse_args(argv)
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
        landed = None
        if args.landed:
            lt = _baseline_tree(args.landed, tmp / "landed")
            try:
                landed = _run_worker(lt / "src", ["main", str(executions)])
            finally:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(lt)], check=False, capture_output=True)
        new = _run_worker(ROOT / "src", ["main", str(executions)])
        snap = _run_worker(ROOT / "src", ["main", str(executions), "snapshots"])
        _main_table(old, new, snap, landed, args.landed)
        print(f"\n(a2) the same piece through the command line, wall and CPU of the process "
              f"tree: tdpmmu check --max-executions {executions} --kernel ... --scenario ... "
              "[-j N] (KASAN off)")
        limit = ["--max-executions", str(executions)]
        for k in KERNELS:
            limit += ["--kernel", k]
        for sc in SCENARIOS:
            limit += ["--scenario", sc]
        # KASAN is off by default at the baseline, on today.
        cli = [("baseline", "-j 1", _run_worker(base / "src", ["cli", *limit]))]
        for j in ("1", "2"):
            cli.append(("new", f"-j {j}", _run_worker(ROOT / "src", ["cli", "-j", j,
                                                                     "--no-kasan", *limit])))
        cli.append(("new", "-j 2 --snapshots", _run_worker(
            ROOT / "src", ["cli", "-j", "2", "--snapshots", "--no-kasan", *limit])))
        _cli_table(cli)
        if args.big:
            print("\n(c) three- and four-thread scenarios (dpor, complete searches, -j 2; "
                  "bench/scenarios/)")
            for kernel, scen in BIG:
                m = _run_worker(ROOT / "src", ["cli", "-j", "2", "--kernel", kernel,
                                               "--scenario", str(ROOT / "bench" / "scenarios"
                                                                 / scen)])
                print(f"  {kernel:7} {scen:32} executions {m['executions']:>8,}  wall "
                      f"{m['wall']:7.1f} s  CPU {m['cpu']:7.1f} s  exit {m['code']}")
                for line in m["tail"][-3:]:
                    print(f"      {line}")
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


def _worker(argv: list[str]) -> int:
    what, *rest = argv
    if what == "main":
        res = worker_main_job(int(rest[0]), len(rest) > 1 and rest[1] == "snapshots")
    elif what == "cli":
        res = cli_run(rest)
    elif what == "ratios":
        res = worker_ratios(rest[0], rest[1:])
    else:
        res = worker_traces(rest[0])
    print(json.dumps(res))
    return 0


def _head() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or "?"


def _main_table(old: dict[str, Any], new: dict[str, Any], snap: dict[str, Any],
                landed: dict[str, Any] | None = None, landed_commit: str = "") -> None:
    head = (f"  {'engine':16} {'executions':>10} {'vis.ops':>10} {'ops run':>10} {'CPU s':>7} "
            f"{'wall s':>7} {'CPU us/op':>10} {'exec/s':>8} {'re-run':>7}")
    print(head)
    rows = [("baseline", old), ("new", new), ("new, snapshots", snap)]
    if landed is not None:
        rows.insert(1, (f"landed {landed_commit}"[:16], landed))
    for name, m in rows:
        ops = new["steps"] if name == "new, snapshots" else m["steps"]  # the same work
        run = m.get("run_steps", m["steps"])
        per_op = m["cpu"] / max(ops, 1) * 1e6
        rerun = m["replayed"] / max(run, 1)
        execs = new["executions"] if name == "new, snapshots" else m["executions"]
        print(f"  {name:16} {execs:>10,} {ops:>10,} {run:>10,} {m['cpu']:>7.2f} "
              f"{m['wall']:>7.2f} {per_op:>10.2f} {execs / m['cpu']:>8.0f} "
              f"{rerun:>7.1%}")
    print(f"  snapshots: {snap['forks']:,} forks, {snap['forks'] / max(new['executions'], 1):.1f}"
          " per execution (each snapshot taken, each execution resumed from one)")
    ratio = (old["cpu"] / old["steps"]) / (new["cpu"] / new["steps"])
    if landed is not None:
        print(f"  (landed = the model and engine before this bench's engine changes: "
              f"{(landed['cpu'] / landed['steps']) / (new['cpu'] / new['steps']):.2f}x the "
              "new CPU per operation)")
    print(f"  CPU per visible operation: {ratio:.2f}x lower than the baseline's; CPU of "
          f"the whole piece: {old['cpu'] / new['cpu']:.2f}x lower (with snapshots: "
          f"{old['cpu'] / snap['cpu']:.2f}x)")
    for label, other in (("new", new), ("new, snapshots", snap)):
        same = [(a[:2], a[4], b[4]) for a, b in zip(old["rows"], other["rows"], strict=True)
                if a[4] != b[4]]
        print(f"  findings per check ({label}): " + ("the same kinds as the baseline" if not same
                                                    else f"DIFFER: {same}"))
    print("  (vis.ops = steps of every execution, replayed prefixes included: the same work "
          "for\n   every row; ops run = steps actually executed (a snapshot's prefix is not "
          "run again);\n   re-run = steps that re-ran an explored prefix / ops run; CPU "
          "includes the snapshot\n   processes; executions include minimisation and the "
          "traced replay of a finding)")


def _cli_table(rows: list) -> None:
    print(f"  {'engine':9} {'workers':18} {'executions':>10} {'wall s':>8} {'CPU s':>8} "
          f"{'wall vs baseline -j 1':>22}")
    base = rows[0][2]["wall"]
    for name, jobs, m in rows:
        print(f"  {name:9} {jobs:18} {m['executions']:>10,} {m['wall']:>8.2f} {m['cpu']:>8.2f} "
              f"{base / m['wall']:>21.2f}x")
        if m["code"] not in (0, 1):
            print("      exit", m["code"], *m["tail"][-3:])
    print("  (a worker process starts in ~1 s (spawn); with --snapshots each worker forks its "
          "own\n   snapshot processes: a Ray worker would replay prefixes instead)")


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
