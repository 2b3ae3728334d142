"""``tdpmmu check`` options for where checks run: ``-j``, ``--backend``, time limits.

:func:`check_elsewhere` takes over a check command when it runs on several
processes or on Ray, or under a time limit or checkpoint; otherwise it returns
None and the command runs its plain serial loop.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from .. import engine
from ..checker import CheckResult, UserError, build_model, resolve_kernel, resolve_scenario
from .units import CheckUnit, assemble

INTERRUPTED = 130  # exit code after Ctrl-C, as a shell reports SIGINT
SPLITTABLE = ("dfs", "dpor", "source-dpor")


def add_options(p: argparse.ArgumentParser, positive: Callable[[str], int]) -> None:
    p.add_argument("-j", "--jobs", type=positive, metavar="N",
                   help="worker processes; several checks run side by side (default: "
                   "every core), a single dfs/dpor/source-dpor check is split into subtrees "
                   "(default: 1, no split)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local processes (default) or tasks on a Ray cluster "
                   "(needs tdpmmu[ray])")
    p.add_argument("--ray-address", metavar="ADDRESS",
                   help="the Ray cluster to join (default: RAY_ADDRESS, else a local "
                   "instance)")
    p.add_argument("--snapshots", action="store_true",
                   help="reach each backtrack point from a forked snapshot of the execution "
                   "instead of re-running its prefix from setup (POSIX, local workers; the "
                   "same results; a fork costs about 100 steps here, so it pays off for deep "
                   "prefixes) (default: re-run)")
    p.add_argument("--time-limit", type=_seconds, metavar="SECONDS",
                   help="stop searching after SECONDS (the result is then incomplete; "
                   "default: no limit)")
    p.add_argument("--checkpoint", metavar="FILE",
                   help="when stopped (Ctrl-C, --time-limit), save the search to FILE "
                   "(default: not saved)")
    p.add_argument("--resume", metavar="FILE",
                   help="go on with the search saved in FILE (default: a new search)")


def _seconds(text: str) -> float:
    try:
        n = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not n > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return n


def make_units(args: argparse.Namespace, knobs: dict[str, str], kernels: list[str],
               scenarios: list[str], deadline: float | None,
               rows: list[tuple[str, str, dict[str, str]]] | None = None) -> list[CheckUnit]:
    """One unit per (kernel, scenario) (or per row: kernel, scenario, knobs),
    every spec checked here, before any worker."""
    if rows is None:
        rows = [(k, s, knobs) for k in kernels for s in scenarios]
    units = []
    for kernel, scenario, row_knobs in rows:
        kcls = resolve_kernel(kernel)
        build_model(kcls, resolve_scenario(scenario), row_knobs)  # bad knobs: errors now
        units.append(CheckUnit(kernel, scenario, args.strategy,
                               tuple(sorted(row_knobs.items())), args.max_executions,
                               args.seed or 0, args.preemption_bound, args.max_steps,
                               args.kasan, args.panic_on_warn, deadline,
                               # a Ray worker replays prefixes (snapshots fork locally)
                               getattr(args, "snapshots", False)
                               and getattr(args, "backend", "local") == "local"))
    return units


def check_elsewhere(args: argparse.Namespace, knobs: dict[str, str], kernels: list[str],
                    scenarios: list[str],
                    rows: list[tuple[str, str, dict[str, str]]] | None = None) -> int | None:
    """``rows``: the checks as (kernel, scenario, knobs), when they are not
    ``kernels`` x ``scenarios`` with ``knobs`` (--tdp-mmu, the main job)."""
    if args.ray_address and args.backend != "ray":
        raise UserError("--ray-address applies to --backend ray")
    single = len(rows) == 1 if rows is not None else len(kernels) == 1 and len(scenarios) == 1
    if args.checkpoint or args.resume:
        from .checkpoint import checkpoint_command
        if rows is not None and len(rows) > 1 and len(kernels) == 1 and len(scenarios) == 1:
            raise UserError("--checkpoint saves one search: give one --tdp-mmu")
        if rows is not None and len(rows) == 1:
            knobs = rows[0][2]
        if (args.jobs or 1) > 1 or args.backend != "local":
            # A split search's state is spread over units in flight; a
            # checkpoint holds one search's stack, so it runs in this process.
            print("tdpmmu: --checkpoint/--resume run the search in one process "
                  "(-j and --backend apply to searches without a checkpoint)", file=sys.stderr)
        return checkpoint_command(args, knobs, kernels, scenarios)
    # A matrix uses every core by default; one check is split only when asked
    # for (-j N), since a split search that stops at a violation counts the
    # executions before it differently from -j 1.
    jobs = args.jobs or (1 if single else os.cpu_count() or 1)
    deadline = time.time() + args.time_limit if args.time_limit else None
    splittable = single and args.strategy in SPLITTABLE and args.max_executions is None
    if single and not splittable and jobs > 1:
        # Said, not silently dropped: a capped split search would count other
        # executions under the cap than -j 1 does.
        why = ("a search capped by --max-executions" if args.strategy in SPLITTABLE
               else f"a {args.strategy} search")
        print(f"tdpmmu: -j {jobs} does not split {why}; it runs in one process",
              file=sys.stderr)
    if args.backend == "local" and (jobs == 1 or (single and not splittable)):
        if deadline is None:
            return None  # the plain serial loop
        jobs = 1
    units = make_units(args, knobs, kernels, scenarios, deadline, rows)
    from ..cli import report_results
    from .backend import make_backend
    code = None
    with make_backend(args.backend, jobs, args.ray_address) as backend:
        if splittable and (jobs > 1 or args.backend == "ray"):
            results, code = _split(args, units[0], backend)
        else:
            results, code = _matrix(args, units, backend, single)
    finished = report_results(args, results, single)
    return finished if code is None else code


def _split(args: argparse.Namespace, unit: CheckUnit, backend: Any
           ) -> tuple[list[CheckResult], int | None]:
    from ..checker import SetupFinding
    from .progress import unit_bar
    from .split import ProgramRef, explore_split
    with unit_bar(f"{unit.kernel} / {unit.scenario}", quiet=args.json) as bar:
        try:
            out = explore_split(ProgramRef("tdpmmu.parallel.units:unit_program", (unit,)),
                                backend, unit.strategy,
                                progress=None if bar is None else bar.split_tick)
        except SetupFinding as exc:  # holds in every execution, as check() reports it
            return [assemble(unit, exc.result(unit.strategy))], None
    res = assemble(unit, out.result)
    if out.result.cut_by == "interrupted":
        print("tdpmmu: interrupted; the search so far:", file=sys.stderr)
        return [res], INTERRUPTED
    return [res], None


def _matrix(args: argparse.Namespace, units: list[CheckUnit], backend: Any, single: bool
            ) -> tuple[list[CheckResult], int | None]:
    from ..cli import _print_row
    from .matrix import Interrupted, run_matrix
    from .progress import matrix_bar
    done: list[CheckResult] = []

    def on_result(i: int, r: engine.Result) -> None:
        done.append(assemble(units[i], r))
        if bar is not None:
            bar.advance()
        if not single and not args.json:
            _print_row(done[-1], first=len(done) == 1)

    with matrix_bar(len(units), quiet=args.json) as bar:
        try:
            run_matrix(units, backend, on_result)
        except Interrupted as exc:
            finished = [assemble(u, r) for u, r in zip(units, exc.results, strict=True)
                        if r is not None]
            if not single and not args.json:  # the rows not printed yet (out of order)
                for res in finished[len(done):]:
                    _print_row(res, first=False)
            print(f"tdpmmu: interrupted: {len(finished)} of {len(units)} checks finished",
                  file=sys.stderr)
            return finished, INTERRUPTED
    return done, None
