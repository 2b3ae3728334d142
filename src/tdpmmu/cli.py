"""``tdpmmu``: list what is built in, check kernel versions on scenarios, replay.

Exit codes: 0 no violation, 1 a violation was found, 2 bad input (one line
on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import NoReturn

from . import engine
from .checker import CheckResult, UserError, check, parse_knobs, replay
from .engine.explore import _make_strategy as make_strategy
from .kvm import fidelity
from .kvm.versions import BUILTIN, KNOBS
from .parallel.progress import check_bar
from .report import ok_report, replay_command, summary_row, to_json, violation_report
from .scenarios import SEED_SCENARIOS, builtin_scenario_path, scenario_names
from .scenarios.format import load_scenario


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"tdpmmu: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {n}")
    return n


def _natural(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tdpmmu", description="Check the KVM x86 TDP MMU model under every "
                "relevant interleaving.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    sub.add_parser("list", help="list kernel versions, scenarios, strategies and knobs")

    c = sub.add_parser("check", help="check kernel versions on scenarios (no arguments: "
                       "the built-in versions x the seed's scenarios)")
    c.add_argument("--kernel", action="append", metavar="NAME|FILE.py",
                   help="a built-in version or a variant file (repeatable)")
    c.add_argument("--scenario", action="append", metavar="NAME|FILE",
                   help="a built-in scenario or a scenario file (repeatable)")
    _run_options(c)
    c.add_argument("--strategy", default="dpor", choices=engine.STRATEGIES)
    c.add_argument("--max-executions", type=_positive, metavar="N",
                   help="stop after N executions (dfs/dpor/bounded: the search is then "
                   "incomplete; pct/random: the number of runs, default 1000)")
    c.add_argument("--preemption-bound", type=_natural, metavar="N",
                   help="with --strategy bounded: at most N preemptions (default 2)")
    c.add_argument("--seed", type=int, help="seed of pct/random (default 0)")
    c.add_argument("--max-steps", type=_positive, default=5_000, metavar="N",
                   help="steps after which an execution is a livelock (default 5000)")
    from .parallel.command import add_options
    add_options(c, _positive)

    r = sub.add_parser("replay", help="re-run exactly the interleaving of a schedule token")
    r.add_argument("--kernel", required=True, metavar="NAME|FILE.py")
    r.add_argument("--scenario", required=True, metavar="NAME|FILE")
    r.add_argument("--schedule", required=True, metavar="TOKEN")
    _run_options(r)
    return p


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--knob", action="append", default=[], metavar="NAME=CHOICE",
                   help="a what-if of the seed thread (see `tdpmmu list`)")
    p.add_argument("--kasan", dest="kasan", action="store_true", default=True,
                   help="CONFIG_KASAN: report uses of freed memory (the default, as KVM "
                   "developers test)")
    p.add_argument("--no-kasan", dest="kasan", action="store_false",
                   help="no KASAN, as on the seed reporter's kernel: a freed object keeps "
                   "its stale contents (the first fix attempt then faults on LIST_POISON1)")
    p.add_argument("--no-panic-on-warn", dest="panic_on_warn", action="store_false",
                   help="a WARN is recorded and the run goes on (default: a WARN is a "
                   "finding, as with panic_on_warn)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--html", metavar="FILE",
                   help="also write the finding as an HTML page with a swimlane timeline")


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # e.g. `tdpmmu check | head`
        sys.stderr.close()
        return 0


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list()
        if args.command == "replay":
            return cmd_replay(args)
        if args.command in (None, "check"):
            if args.command is None:
                args = build_parser().parse_args(["check"])
            return cmd_check(args)
    except UserError as exc:
        print(f"tdpmmu: error: {exc}", file=sys.stderr)
        return 2
    except engine.EngineError as exc:
        print(f"tdpmmu: error: {exc}", file=sys.stderr)
        return 2
    return 2


def cmd_list() -> int:
    print("Kernel versions:")
    for name, cls in BUILTIN.items():
        print(f"  {name:<14} {cls.summary}")
    print("  FILE.py        a variant: a subclass of a built-in version "
          "(see tdpmmu.kvm.versions.load_kernel)")
    print("\nFidelity (src/tdpmmu/kvm/fidelity: the kernel functions each version must carry):")
    for line in fidelity.coverage(BUILTIN):
        print(f"  {line}")
    print("\nScenarios:")
    for name in scenario_names():
        scen = load_scenario(builtin_scenario_path(name))
        first = scen.description.splitlines()[0] if scen.description else ""
        print(f"  {name:<24} {first}")
    print("\nStrategies: " + ", ".join(engine.STRATEGIES))
    print("\nKnobs (--knob NAME=CHOICE; the first choice is the default):")
    for name, (_attr, choices, good, help_) in KNOBS.items():
        others = [c for c in choices if c != good]
        print(f"  {name:<16} {good} | {' | '.join(others)}: {help_}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    knobs = parse_knobs(args.knob)
    # Nothing asked for is dropped silently: options of other strategies are errors.
    if args.preemption_bound is not None and args.strategy != "bounded":
        raise UserError(f"--preemption-bound applies to --strategy bounded, not "
                        f"{args.strategy}")
    if args.seed is not None and args.strategy not in ("pct", "random"):
        raise UserError(f"--seed applies to --strategy pct or random, not {args.strategy}")
    kernels = args.kernel or list(BUILTIN)
    scenarios = args.scenario or list(SEED_SCENARIOS)
    single = len(kernels) == 1 and len(scenarios) == 1
    from .parallel.command import check_elsewhere
    code = check_elsewhere(args, knobs, kernels, scenarios)
    if code is not None:
        return code
    results: list[CheckResult] = []
    for kernel in kernels:
        for scenario in scenarios:
            with check_bar(f"{kernel} / {scenario}", quiet=args.json) as bar:
                strategy = args.strategy if bar is None else bar.watch(make_strategy(
                    args.strategy, args.max_executions, args.preemption_bound, args.seed or 0))
                res = check(kernel, scenario, strategy=strategy, knobs=knobs,
                            max_executions=args.max_executions, seed=args.seed or 0,
                            preemption_bound=args.preemption_bound,
                            max_steps=args.max_steps, kasan=args.kasan,
                            panic_on_warn=args.panic_on_warn,
                            progress=None if bar is None else bar.tick)
            results.append(res)
            if not single and not args.json:
                _print_row(res, first=len(results) == 1)
    return report_results(args, results, single)


def report_results(args: argparse.Namespace, results: list[CheckResult], single: bool) -> int:
    """Print what the checks found (a table was printed row by row) and the exit code."""
    if args.json:
        data = [to_json(r) for r in results]
        print(json.dumps(data[0] if single else data, indent=2))
    elif single:
        res = results[0]
        print(violation_report(res) if res.violation else ok_report(res))
    else:
        found = [r for r in results if r.violation is not None]
        if found:
            print("\nEach violation replays with `tdpmmu check --kernel K --scenario S` "
                  "(full report) or:")
            for r in found:
                print(f"  {replay_command(r)}")
    if args.html:
        _write_html(args.html, [r for r in results if r.violation is not None])
    return 1 if any(r.violation is not None for r in results) else 0


def _print_row(res: CheckResult, first: bool) -> None:
    cols = summary_row(res)
    widths = (14, 24, 70, 10, 8)
    if first:
        print("  ".join(h.ljust(w) for h, w in zip(
            ("kernel", "scenario", "result", "executions", "time (s)"), widths, strict=True)))
        print("  ".join("-" * w for w in widths))
    result = cols[2] if len(cols[2]) <= widths[2] else cols[2][:widths[2] - 1] + "…"
    print("  ".join((cols[0].ljust(widths[0]), cols[1].ljust(widths[1]),
                     result.ljust(widths[2]), cols[3].rjust(widths[3]),
                     cols[4].rjust(widths[4]))), flush=True)


def _write_html(path: str, found: list[CheckResult]) -> None:
    """The first finding as an HTML page (a note on stderr when there is none)."""
    from .report.html import to_html
    if not found:
        print(f"tdpmmu: no violation, so no {path} was written", file=sys.stderr)
        return
    try:
        with open(path, "w") as f:
            f.write(to_html(found[0]))
    except OSError as exc:
        raise UserError(f"--html {path}: {exc.strerror}") from None


def cmd_replay(args: argparse.Namespace) -> int:
    knobs = parse_knobs(args.knob)
    res = replay(args.kernel, args.scenario, args.schedule, knobs=knobs, kasan=args.kasan,
                 panic_on_warn=args.panic_on_warn)
    if args.html:
        _write_html(args.html, [res] if res.violation is not None else [])
    if args.json:
        print(json.dumps(to_json(res), indent=2))
    elif res.violation is not None:
        print(violation_report(res))
    else:
        print(f"{res.kernel} on {res.scenario}: the interleaving ran without a violation "
              f"({res.result.max_depth} steps)")
    return 1 if res.violation is not None else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
