"""The ``tdpmmu sweep`` command line: options, counts, progress, summary."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..checker import UserError, resolve_kernel
from ..scenarios.format import OPS, ScenarioError
from .generate import Scope, generate
from .run import Finding, SweepResult, run_sweep
from .toml import scenario_toml
from .vocabulary import load_vm, unswept_ops


def _range(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)(?:\.\.(\d+))?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected N or A..B, got {text!r}")
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    if lo < 1 or hi < lo:
        raise argparse.ArgumentTypeError(f"empty or non-positive range {text!r}")
    return lo, hi


def add_parser(sub: Any, positive: Any) -> None:
    s = sub.add_parser("sweep", help="generate every small scenario from the op table, run "
                       "each, and group the findings")
    s.add_argument("--kernel", action="append", required=True, metavar="NAME|FILE.py",
                   help="a built-in version or a variant file (repeatable; required)")
    s.add_argument("--threads", type=_range, default=(2, 2), metavar="A..B",
                   help="threads per scenario (default 2; 2..3 with a few --ops)")
    s.add_argument("--actions-per-thread", type=_range, default=(1, 2), metavar="A..B",
                   help="actions per thread (default 1..2)")
    s.add_argument("--vm", metavar="FILE", help="the VM as a scenario file without threads "
                   "(default: 2 vCPUs, 2 one-page memslots; its [[setup]], if any, replaces "
                   "the prefix that has the vCPUs run first)")
    s.add_argument("--ops", metavar="OP,OP", help="draw only these ops (default: all)")
    s.add_argument("--no-symmetry", dest="symmetry", action="store_false",
                   help="run symmetric scenarios (renamed threads or vCPUs) too")
    s.add_argument("--max-executions", type=positive, default=1000, metavar="N",
                   help="per scenario; a scenario cut there is listed as incomplete "
                   "(default 1000)")
    s.add_argument("--time-limit", type=float, default=600.0, metavar="SECONDS",
                   help="per kernel: start no scenario after this (default 600)")
    s.add_argument("--max-steps", type=positive, default=5_000, metavar="N",
                   help="steps after which an execution is a livelock (default 5000)")
    s.add_argument("-j", "--jobs", type=positive, metavar="N",
                   help="run the scenarios on N local processes (or Ray workers); each "
                   "scenario is one work unit (default: serially, in this process)")
    s.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="where work units run with -j or --ray-address (default local)")
    s.add_argument("--ray-address", metavar="ADDRESS",
                   help="the Ray cluster to join (default: RAY_ADDRESS, else a local instance)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--junit-xml", metavar="FILE",
                   help="also write JUnit XML (xunit2): per version a case for the scope and "
                   "one failing case per unique finding (default: none)")
    s.add_argument("--out", metavar="DIR",
                   help="write each finding's smallest scenario as DIR/NN-KIND-FUNCTION.toml "
                   "(default: none written)")


def _ops(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    ops = tuple(o.strip() for o in text.split(",") if o.strip())
    bad = [o for o in ops if o not in OPS]
    if bad or not ops:
        raise UserError(f"--ops: unknown op {bad[0] if bad else text!r} (known: "
                        f"{', '.join(OPS)})")
    return ops


def cmd_sweep(args: argparse.Namespace) -> int:
    ops = _ops(args.ops)
    if args.time_limit <= 0:
        raise UserError(f"--time-limit: must be positive: {args.time_limit}")
    try:
        vm_data, vm = load_vm(args.vm)
    except ScenarioError as exc:
        raise UserError(f"--vm: {exc}") from None
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--out {out_dir}: {exc.strerror}") from None
    scope = Scope(args.threads, args.actions_per_thread, ops, args.symmetry)
    say = (lambda *a, **k: None) if args.json else print
    skipped = unswept_ops(list(ops or OPS))
    results: list[tuple[Any, SweepResult]] = []
    for spec in args.kernel:
        kernel = resolve_kernel(spec)
        gen = generate(vm_data, vm, scope, kernel)
        say(f"tdpmmu sweep {kernel.name}: threads {_r(scope.threads)}, actions per thread "
            f"{_r(scope.actions)}, VM {args.vm or 'default'} ({vm.vcpus} vCPUs, "
            f"{len(vm.memslots)} memslots), ops: {', '.join(gen.ops)}")
        for op, why in skipped.items():
            say(f"  not swept: {op} ({why})")
        say(f"scenarios: {gen.in_scope} in scope, {gen.after_symmetry} after symmetry, "
            f"{gen.invalid} invalid, {gen.to_run} to run", flush=True)
        with _progress(gen.to_run, kernel.name, args.json) as tick, _backend(args) as backend:
            res = run_sweep(kernel, gen.scenarios, max_executions=args.max_executions,
                            time_limit=args.time_limit, max_steps=args.max_steps, tick=tick,
                            backend=backend, kernel_spec=spec)
        if out_dir is not None:
            _write(out_dir, res)
        results.append((gen, res))
        if not args.json:
            _print_result(res, spec)
    if args.json:
        print(json.dumps([_json(g, r, s) for (g, r), s in zip(results, args.kernel,
                                                            strict=True)], indent=2))
    if args.junit_xml:
        _write_junit(args.junit_xml, [(r, s) for (_, r), s in zip(results, args.kernel,
                                                                   strict=True)])
    return 1 if any(r.findings for _, r in results) else 0


@contextmanager
def _backend(args: argparse.Namespace) -> Iterator[Any]:
    """The parallel backend asked for, or None: run serially."""
    if args.backend == "local" and args.jobs is None and args.ray_address is None:
        yield None
        return
    from ..parallel.backend import make_backend
    backend = make_backend("ray" if args.ray_address else args.backend, args.jobs,
                           args.ray_address)
    try:
        yield backend
    finally:
        backend.close()


def _r(r: tuple[int, int]) -> str:
    return str(r[0]) if r[0] == r[1] else f"{r[0]}..{r[1]}"


def _write(out_dir: Path, res: SweepResult) -> None:
    for i, f in enumerate(sorted(res.findings.values(), key=lambda f: f.size), 1):
        kind, fn, _ = f.signature
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{res.kernel}-{i:02d}-{kind}-{fn}")
        path = out_dir / f"{stem}.toml"
        data = dict(f.scenario)
        data["name"] = stem
        comment = [f"tdpmmu sweep on {res.kernel}: {f.message}",
                   "signature: " + _sig(f),
                   f"reproduce: tdpmmu check --kernel {res.kernel} --scenario {path}",
                   f"replay: tdpmmu replay --kernel {res.kernel} --scenario {path} "
                   f"--schedule {f.schedule}"]
        try:
            path.write_text(scenario_toml(data, comment), encoding="utf-8")
        except OSError as exc:
            raise UserError(f"--out {path}: {exc.strerror}") from None
        f.file = str(path)


def _sig(f: Finding) -> str:
    kind, fn, callers = f.signature
    return f"{kind} in {fn}" + "".join(f" <- {c}" for c in callers)


def _threads_text(data: dict[str, Any]) -> str:
    parts = []
    for t in data["thread"]:
        acts = ", ".join(" ".join([a["op"]] + [f"{k}={v}" for k, v in a.items() if k != "op"])
                         for a in t["actions"])
        parts.append(f"{t['name']}: {acts}")
    return "; ".join(parts)


def _write_junit(path: str, sweeps: list[tuple[SweepResult, str]]) -> None:
    from ..report.junit import sweep_junit
    rows = [(res, spec, ["\n".join(_finding_lines(f, spec)) for f in res.findings.values()])
            for res, spec in sweeps]
    try:
        with open(path, "w") as f:
            f.write(sweep_junit(rows))
    except OSError as exc:
        raise UserError(f"--junit-xml {path}: {exc.strerror}") from None


def _finding_lines(f: Finding, spec: str) -> list[str]:
    """A finding group as the report prints it: its signature, message, smallest
    scenario, and how to replay it; shared by the text table and JUnit."""
    lines = [f"{_sig(f)}  [{f.scenarios} scenario(s)]", f.message,
             f"smallest: {f.threads} threads, {f.actions} actions, {f.steps} steps: "
             f"{_threads_text(f.scenario)}"]
    if f.file:
        lines += [f"file: {f.file}",
                  f"replay: tdpmmu replay --kernel {spec} --scenario {f.file} "
                  f"--schedule {f.schedule}"]
    else:
        lines.append(f"replay token {f.schedule} (--out DIR writes the scenario file)")
    return lines


def _print_result(res: SweepResult, spec: str) -> None:
    print()
    cols = ("kernel", "generated", "run", "verified", "cut", "violating", "not run",
            "unique findings", "time (s)")
    vals = (res.kernel, res.generated, res.run, res.verified, len(res.cut), res.violating,
            res.not_run, len(res.findings), f"{res.elapsed:.1f}")
    widths = [max(len(c), len(str(v))) for c, v in zip(cols, vals, strict=True)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    print("  ".join(str(v).ljust(w) for v, w in zip(vals, widths, strict=True)))
    if res.stopped_by:
        print(f"(stopped by --time-limit: {res.not_run} scenarios not run)")
    for i, f in enumerate(sorted(res.findings.values(), key=lambda f: f.size), 1):
        head, *rest = _finding_lines(f, spec)
        print(f"\n{i}. {head}")
        for line in rest:
            print(f"   {line}")
    if res.cut:
        shown = ", ".join(res.cut[:20]) + (" ..." if len(res.cut) > 20 else "")
        print(f"\nIncomplete (cut by --max-executions): {shown}")


def _json(gen: Any, res: SweepResult, spec: str) -> dict[str, Any]:
    return {
        "kernel": res.kernel,
        "counts": {"in_scope": gen.in_scope, "after_symmetry": gen.after_symmetry,
                   "invalid": gen.invalid, "to_run": gen.to_run},
        "generated": res.generated, "run": res.run, "verified": res.verified,
        "cut": res.cut, "violating": res.violating, "not_run": res.not_run,
        "stopped_by": res.stopped_by, "elapsed_s": round(res.elapsed, 3),
        "findings": [{"kind": f.signature[0], "function": f.signature[1],
                      "callers": list(f.signature[2]), "message": f.message,
                      "scenarios": f.scenarios, "threads": f.threads, "actions": f.actions,
                      "steps": f.steps, "schedule": f.schedule, "file": f.file,
                      "scenario": f.scenario}
                     for f in sorted(res.findings.values(), key=lambda f: f.size)],
    }


class _progress:
    """A progress bar on a terminal; nothing in CI, with --json, or when piped."""

    def __init__(self, total: int, label: str, quiet: bool) -> None:
        self.on = not (quiet or os.environ.get("CI") or not sys.stderr.isatty())
        self.total, self.label = total, label

    def __enter__(self) -> Any:
        if not self.on:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
        self.bar = Progress(BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            transient=True, console=Console(stderr=True))
        self.bar.__enter__()
        task = self.bar.add_task(self.label, total=self.total)

        def tick(n: int, res: SweepResult) -> None:
            self.bar.update(task, completed=n,
                            description=f"{self.label}: {len(res.findings)} findings")
        return tick

    def __exit__(self, *exc: Any) -> None:
        if self.on:
            self.bar.__exit__(*exc)
