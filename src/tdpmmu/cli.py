"""``tdpmmu``: list what is built in, check kernel versions on scenarios, replay.

Exit codes: 0 no violation, 1 a violation was found, 2 bad input (one line
on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from typing import Any, NoReturn

from . import __version__, engine
from .checker import CheckResult, UserError, check, parse_knobs, replay, resolve_kernel_notes
from .engine.explore import _make_strategy as make_strategy
from .escape import one_line, terminal_safe
from .kvm import fidelity
from .kvm.versions import BUILTIN, KNOBS, SEED_VERSIONS
from .parallel.progress import check_bar
from .report import ok_report, replay_command, to_json, violation_report
from .scenarios import SEED_LEGACY_SCENARIOS, SEED_SCENARIOS, builtin_scenario_path, scenario_names
from .scenarios.format import load_scenario

_EXIT_CODES = """exit codes: 0 no violation, 1 a violation was found, 2 bad input (one line on
stderr, no traceback)"""

_CHECK_EPILOG = _EXIT_CODES + """

examples:
  tdpmmu check                                        the seed thread's versions x its scenarios
  tdpmmu check --kernel all                           every built-in version x every scenario
  tdpmmu check --kernel v5.10 --scenario seed-bug     one pair: the full report of the bug
  tdpmmu check --kernel my_patch.py --scenario seed-bug --explain
  tdpmmu check --kernel v5.11 --strategy random --max-executions 200 --seed 1
  tdpmmu check --junit-xml results.xml --html first-finding.html"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        _error(message)
        raise SystemExit(2)


def _error(message: str) -> None:
    """The one line of a bad-input error (user strings in it escaped)."""
    print(f"tdpmmu: error: {one_line(message)}", file=sys.stderr)


def _out(text: str = "", flush: bool = False) -> None:
    """Print report text: control characters from user strings shown escaped."""
    print(terminal_safe(text), flush=flush)


# Whether this command has found a violation yet: a broken pipe or Ctrl-C
# must not turn a violation into success.
_found: list[bool] = [False]


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
                "relevant interleaving.", epilog=_EXIT_CODES,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"tdpmmu {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)

    sub.add_parser("list", help="list kernel versions, scenarios, strategies and knobs")
    s = sub.add_parser("show", help="a scenario in full: its description, VM and threads")
    s.add_argument("scenario", metavar="NAME|FILE", help="a built-in scenario or a file")

    c = sub.add_parser("check", help="check kernel versions on scenarios (no arguments: "
                       "the seed thread's versions x its scenarios)",
                       epilog=_CHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--kernel", action="append", metavar="NAME|FILE.py",
                   help="a built-in version, a variant file, or `all` (every built-in "
                   "version; with no --scenario, over every built-in scenario) "
                   f"(repeatable; default: the seed thread's {', '.join(SEED_VERSIONS)})")
    c.add_argument("--scenario", action="append", metavar="NAME|FILE",
                   help="a built-in scenario, a scenario file, or `all` (every built-in "
                   "scenario) (repeatable; default: the seed's scenarios)")
    _run_options(c)
    c.add_argument("--strategy", default="dpor", choices=engine.STRATEGIES,
                   help="how interleavings are chosen: dfs (all), dpor (all, reduced; the "
                   "default), bounded (few preemptions), pct or random (sampled)")
    c.add_argument("--max-executions", type=_positive, metavar="N",
                   help="stop after N executions (dfs/dpor/bounded: the search is then "
                   "incomplete; pct/random: the number of runs, default 1000)")
    c.add_argument("--preemption-bound", type=_natural, metavar="N",
                   help="with --strategy bounded: at most N preemptions (default 2)")
    c.add_argument("--seed", type=int, metavar="S", help="seed of pct/random (default 0)")
    c.add_argument("--max-steps", type=_positive, default=5_000, metavar="N",
                   help="steps after which an execution is a livelock (default 5000)")
    c.add_argument("--junit-xml", metavar="FILE",
                   help="also write JUnit XML (xunit2): one test case per version x scenario "
                   "(default: none)")
    from .parallel.command import add_options
    add_options(c, _positive)

    r = sub.add_parser("replay", help="re-run exactly the interleaving of a schedule token")
    r.add_argument("--kernel", required=True, metavar="NAME|FILE.py",
                   help="the version or variant file the token was found on (required)")
    r.add_argument("--scenario", required=True, metavar="NAME|FILE",
                   help="the scenario the token was found on (required)")
    r.add_argument("--schedule", required=True, metavar="TOKEN",
                   help="the schedule token a report printed (required)")
    r.add_argument("--max-steps", type=_positive, default=100_000, metavar="N",
                   help="a longer schedule is rejected before it is decoded (default 100000)")
    _run_options(r)

    from .sweep.command import add_parser as add_sweep
    add_sweep(sub, _positive)
    return p


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--knob", action="append", default=[], metavar="NAME=CHOICE",
                   help="a what-if of the seed thread (repeatable; see `tdpmmu list`; "
                   "default: each knob's first choice)")
    p.add_argument("--tdp-mmu", dest="tdp_mmu", action="append", choices=("0", "1"),
                   default=[], metavar="0|1",
                   help="the kvm module parameter tdp_mmu: 1 the TDP MMU, 0 the legacy "
                   "(shadow) MMU's direct roots; give both (--tdp-mmu 0 --tdp-mmu 1) to "
                   "check each (default: the scenario's [vm] tdp_mmu, else the version's: "
                   "0 before 5.15; `tdpmmu check` with no arguments adds tdp_mmu=0 rows)")
    p.add_argument("--prove-mmu", dest="prove_mmu", action="store_true",
                   help="CONFIG_KVM_PROVE_MMU=y (6.6+; the same as --knob KVM_PROVE_MMU=y): "
                   "the MMU's KVM_MMU_WARN_ON checks run (default: off, as the kernel's "
                   "Kconfig; rejected on versions before 6.6)")
    p.add_argument("--kasan", dest="kasan", action="store_true", default=True,
                   help="CONFIG_KASAN: report uses of freed memory (the default, as KVM "
                   "developers test)")
    p.add_argument("--no-kasan", dest="kasan", action="store_false",
                   help="no KASAN, as on the seed reporter's kernel: a freed object keeps "
                   "its stale contents (the first fix attempt then faults on LIST_POISON1)")
    p.add_argument("--no-panic-on-warn", dest="panic_on_warn", action="store_false",
                   help="a WARN is recorded and the run goes on (default: a WARN is a "
                   "finding, as with panic_on_warn)")
    p.add_argument("--json", action="store_true",
                   help="print JSON instead of the text report (default: text)")
    p.add_argument("--explain", action="store_true",
                   help="tell the counterexample as a story: who took and dropped which "
                   "reference, who yielded, who freed, what broke after (default: off)")
    p.add_argument("--html", metavar="FILE",
                   help="also write the finding as an HTML page: lock holds, root counts, "
                   "the story (default: none)")


EXIT_SIGPIPE = 128 + 13
EXIT_SIGINT = 128 + 2


def main(argv: list[str] | None = None) -> int:
    _found[0] = False
    try:
        return _main(argv)
    except BrokenPipeError:  # e.g. `tdpmmu check | head -1`
        return _broken_pipe()
    except KeyboardInterrupt:  # Ctrl-C outside a check loop (loading, replay)
        print("tdpmmu: interrupted", file=sys.stderr)
        return EXIT_SIGINT


def _broken_pipe() -> int:
    """The reader of stdout went away: the finding's exit code, else SIGPIPE's,
    never 0; and no 'Exception ignored' when Python flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass  # stdout is not a file descriptor (tests): nothing will be flushed to it
    return 1 if _found[0] else EXIT_SIGPIPE


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list()
        if args.command == "show":
            return cmd_show(args.scenario)
        if args.command == "replay":
            return cmd_replay(args)
        if args.command == "sweep":
            from .sweep.command import cmd_sweep
            return cmd_sweep(args)
        if args.command in (None, "check"):
            if args.command is None:
                args = build_parser().parse_args(["check"])
            return cmd_check(args)
    except (UserError, engine.EngineError) as exc:
        _error(str(exc))
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
        print(f"  {name:<24} {_first_sentence(scen.description)}")
    print("\nStrategies: " + ", ".join(engine.STRATEGIES))
    print("\nKnobs (--knob NAME=CHOICE; the first choice is the default):")
    for name, (_attr, choices, good, help_) in KNOBS.items():
        if name == "tdp_mmu":  # a module parameter: its default is not a fixed choice
            print(f"  {name:<16} {' | '.join(choices)}: {help_}")
            continue
        others = [c for c in choices if c != good]
        print(f"  {name:<16} {good} | {' | '.join(others)}: {help_}")
    return 0


def _first_sentence(text: str) -> str:
    """The description's first sentence, whole (``tdpmmu show`` prints the rest)."""
    flat = " ".join(text.split())
    end = flat.find(". ")
    return flat if end < 0 else flat[:end + 1]


def cmd_show(spec: str) -> int:
    from .checker import resolve_scenario
    scen = resolve_scenario(spec)
    print(f"{scen.name} ({scen.path})\n")
    print(scen.description or "(no description)")
    print(f"\nVM: {scen.vcpus} vCPU(s), root level {scen.root_level}"
          + (", manual dirty-log protect" if scen.manual_dirty_log_protect else "")
          + (", PML (kvm_intel pml=1)" if scen.pml else ""))
    for m in scen.memslots:
        flags = [f for f, on in (("huge", m.huge), ("log_dirty", m.log_dirty)) if on]
        print(f"  memslot {m.id} (as_id {m.as_id}): gfn {m.base_gfn:#x}+{m.npages} at hva "
              f"{m.hva:#x}{' ' + ' '.join(flags) if flags else ''}")
    if scen.setup:
        print("Setup: " + "; ".join(_action(a) for a in scen.setup))
    for name, actions in scen.threads:
        print(f"Thread {name}: " + "; ".join(_action(a) for a in actions))
    return 0


def _action(a: Any) -> str:
    def show(v: Any) -> str:
        if isinstance(v, list):
            return "[" + ", ".join(show(x) for x in v) + "]"
        if isinstance(v, tuple):
            return " ".join(hex(x) if isinstance(x, int) else str(x) for x in v)
        return str(v)
    args = ", ".join(f"{k}={show(v)}" for k, v in a.args.items())
    return f"{a.op}({args})"


def knob_sets(args: argparse.Namespace, knobs: dict[str, str]) -> list[dict[str, str]]:
    """The knob settings to check, one per --tdp-mmu value (the matrix's third
    dimension): ``--tdp-mmu`` and ``--knob tdp_mmu=`` name the same parameter."""
    values = list(dict.fromkeys(args.tdp_mmu))
    if values and "tdp_mmu" in knobs:
        raise UserError("--tdp-mmu: also given as --knob tdp_mmu; give one")
    if not values:
        return [knobs]
    return [{**knobs, "tdp_mmu": v} for v in values]


def default_rows(kernels: list[str], scenarios: list[str]) -> list[tuple[str, str, dict]]:
    """The main job: each seed version on each seed scenario as the scenario says
    (tdp_mmu=1, as the seed's reporter ran), then the first (v5.10, as released)
    with the legacy MMU (tdp_mmu=0) on the scenarios of the seed's two claims
    about it (SEED_LEGACY_SCENARIOS).  The seed's later versions change only the
    TDP MMU, so their legacy rows would repeat v5.10's."""
    rows = [(k, s, {}) for k in kernels for s in scenarios]
    rows += [(kernels[0], s, {"tdp_mmu": "0"}) for s in SEED_LEGACY_SCENARIOS]
    return rows


def _parse_knobs(args: argparse.Namespace) -> dict[str, str]:
    """``--knob`` pairs, with ``--prove-mmu`` as ``KVM_PROVE_MMU=y``."""
    knobs = parse_knobs(args.knob)
    if args.prove_mmu:
        if knobs.get("KVM_PROVE_MMU") == "n":
            raise UserError("--prove-mmu: also given as --knob KVM_PROVE_MMU=n; give one")
        knobs["KVM_PROVE_MMU"] = "y"
    return knobs


def cmd_check(args: argparse.Namespace) -> int:
    knobs = _parse_knobs(args)
    # Nothing asked for is dropped silently: options of other strategies are errors.
    if args.preemption_bound is not None and args.strategy != "bounded":
        raise UserError(f"--preemption-bound applies to --strategy bounded, not "
                        f"{args.strategy}")
    if args.seed is not None and args.strategy not in ("pct", "random"):
        raise UserError(f"--seed applies to --strategy pct or random, not {args.strategy}")
    kernels = expand_all(args.kernel, list(BUILTIN)) or list(SEED_VERSIONS)
    every_version = "all" in (args.kernel or [])
    scenarios = (expand_all(args.scenario, scenario_names())
                 or (scenario_names() if every_version else list(SEED_SCENARIOS)))
    sets = knob_sets(args, knobs)
    if not args.kernel and not args.scenario and not args.tdp_mmu and "tdp_mmu" not in knobs:
        rows = [(k, s, {**knobs, **extra}) for k, s, extra in default_rows(kernels, scenarios)]
    else:
        rows = [(k, s, ks) for k in kernels for s in scenarios for ks in sets]
    single = len(rows) == 1
    note = None if args.scenario or every_version else default_scenarios_note(scenarios)
    if note and not args.json:
        _out(note)
    loaded = {kernel: _load_kernel(kernel, knobs) for kernel in dict.fromkeys(kernels)}
    from .parallel.command import check_elsewhere
    code = check_elsewhere(args, knobs, kernels, scenarios, rows=rows)
    if code is not None:
        return code
    results: list[CheckResult] = []
    try:
        for kernel, scenario, row_knobs in rows:
            with check_bar(f"{kernel} / {scenario}", quiet=args.json) as bar:
                strategy = args.strategy if bar is None else bar.watch(make_strategy(
                    args.strategy, args.max_executions, args.preemption_bound,
                    args.seed or 0))
                res = check(loaded[kernel], scenario, strategy=strategy, knobs=row_knobs,
                            max_executions=args.max_executions, seed=args.seed or 0,
                            preemption_bound=args.preemption_bound,
                            max_steps=args.max_steps, kasan=args.kasan,
                            panic_on_warn=args.panic_on_warn,
                            progress=None if bar is None else bar.tick,
                            snapshots=args.snapshots)
            res.kernel_spec = kernel  # the replay line names it as the user did
            results.append(res)
            _found[0] = _found[0] or res.violation is not None
            if not single and not args.json:
                _print_row(res, first=len(results) == 1)
    except KeyboardInterrupt:
        return report_interrupted(results, len(rows), args.json)
    return report_results(args, results, single)


def report_results(args: argparse.Namespace, results: list[CheckResult], single: bool) -> int:
    """Print what the checks found (a table was printed row by row) and the exit code."""
    _found[0] = _found[0] or any(r.violation is not None for r in results)
    if args.json:
        data = [to_json(r) for r in results]
        print(json.dumps(data[0] if single else data, indent=2))
    elif single:
        res = results[0]
        _out(violation_report(res, args.explain) if res.violation else ok_report(res))
    else:
        _print_replay_lines(results)
    if args.html:
        _write_html(args.html, [r for r in results if r.violation is not None])
    if args.junit_xml:
        _write_junit(args.junit_xml, results)
    return 1 if any(r.violation is not None for r in results) else 0


def _load_kernel(spec: str, knobs: dict[str, str]) -> Any:
    """The kernel class of ``spec``; its notes and warnings go to stderr."""
    cls, notes = resolve_kernel_notes(spec, knobs)
    for note in notes:
        print(f"tdpmmu: {one_line(note)}", file=sys.stderr)
    return cls


def expand_all(asked: list[str] | None, every: list[str]) -> list[str]:
    """The names asked for, with ``all`` standing for every built-in one (in the
    built-in order), each once, in the order first asked."""
    names: list[str] = []
    for name in asked or []:
        names.extend(every if name == "all" else [name])
    return list(dict.fromkeys(names))


def default_scenarios_note(ran: list[str]) -> str | None:
    """What `check` without --scenario runs, and why: the seed's scenarios, not all."""
    left_out = [n for n in scenario_names() if n not in ran]
    if not left_out:
        return None
    return (f"Scenarios: the seed thread's {len(ran)} ({', '.join(ran)}); not run by "
            f"default: {', '.join(left_out)} (add them with --scenario NAME).\n")


def _print_replay_lines(results: list[CheckResult]) -> None:
    found = [r for r in results if r.violation is not None]
    if found:
        _out("\nEach violation replays with `tdpmmu check --kernel K --scenario S` "
             "(full report) or:")
        for r in found:
            _out(f"  {replay_command(r)}")


def report_interrupted(results: list[CheckResult], total: int, as_json: bool = False) -> int:
    """Ctrl-C during checks: print what finished -- the replay lines of the
    violations already found (their rows were printed as they finished), or
    with ``--json`` the finished checks as the JSON list a whole run prints --
    say how far the run got (one line on stderr), exit 130."""
    if as_json:
        print(json.dumps([to_json(r) for r in results], indent=2))
    else:
        _print_replay_lines(results)
    sys.stdout.flush()
    print(f"tdpmmu: interrupted: {len(results)} of {total} checks finished",
          file=sys.stderr)
    return EXIT_SIGINT


def _print_row(res: CheckResult, first: bool) -> None:
    from .report.text import summary_lines
    _out("\n".join(summary_lines(res, first)), flush=True)


def _write_html(path: str, found: list[CheckResult]) -> None:
    """The first finding as an HTML page (a note on stderr when there is none)."""
    from .report.html import to_html
    if not found:
        print(f"tdpmmu: no violation, so no {one_line(path)} was written", file=sys.stderr)
        return
    try:
        with open(path, "w") as f:
            f.write(to_html(found[0]))
    except OSError as exc:
        raise UserError(f"--html {path}: {exc.strerror}") from None


def _write_junit(path: str, results: list[CheckResult]) -> None:
    from .report.junit import to_junit
    try:
        with open(path, "w") as f:
            f.write(to_junit(results))
    except OSError as exc:
        raise UserError(f"--junit-xml {path}: {exc.strerror}") from None


def cmd_replay(args: argparse.Namespace) -> int:
    knobs = _parse_knobs(args)
    sets = knob_sets(args, knobs)
    if len(sets) > 1:
        raise UserError("--tdp-mmu: a schedule replays on one MMU; give one value")
    knobs = sets[0]
    res = replay(_load_kernel(args.kernel, knobs), args.scenario, args.schedule, knobs=knobs,
                 kasan=args.kasan, panic_on_warn=args.panic_on_warn, max_steps=args.max_steps)
    res.kernel_spec = args.kernel
    if args.html:
        _write_html(args.html, [res] if res.violation is not None else [])
    _found[0] = res.violation is not None
    if args.json:
        print(json.dumps(to_json(res), indent=2))
    elif res.violation is not None:
        _out(violation_report(res, args.explain))
    else:
        _out(f"{res.kernel} on {res.scenario}: the interleaving ran without a violation "
             f"({res.result.max_depth} steps)")
    return 1 if res.violation is not None else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
