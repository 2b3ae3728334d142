"""A longer fuzz run of the tool's inputs than CI's (tests/cli/test_fuzz.py).

    .venv/bin/python bench/fuzz.py [--examples N] [--seed S]

Draws N cases of each kind (scenario files, variant files, schedule tokens,
command lines), runs each through ``tdpmmu`` in-process, and prints the cases
tried, the outcomes (exit code, and the error's reason or the finding's kind)
and every case that broke the contract (exit 0/1 with a report, or 2 with one
line; no traceback), with CPU and wall time.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "cli"))

from fuzz_inputs import (  # noqa: E402
    BOUNDS,
    argv,
    check_contract,
    run,
    scenario_text,
    token,
    variant_text,
    with_file,
)
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402


def outcome_class(o) -> str:
    if o.rc == 2:
        line = o.err.strip().splitlines()[-1] if o.err.strip() else ""
        reason = re.sub(r"^tdpmmu: error: ", "", line)
        reason = re.sub(r"/tmp/\S+", "FILE", reason)
        reason = re.sub(r"'[^']*'|\"[^\"]*\"|\d+", "_", reason)
        return "exit 2: " + reason[:60]
    first = o.out.strip().splitlines()[0] if o.out.strip() else ""
    return f"exit {o.rc}: " + re.sub(r"\d+", "_", first)[:60]


def drive_one(strategy, fn, tally: Counter, cfg, seed_value: int) -> None:
    @seed(seed_value)
    @cfg
    @given(strategy)
    def drive(x):
        fn(x, tally)

    drive()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--examples", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    opts = p.parse_args()
    cfg = settings(max_examples=opts.examples, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))
    bad: list[str] = []

    def case(kind: str, args: list[str], tally: Counter) -> None:
        o = run(args)
        tally[outcome_class(o)] += 1
        try:
            check_contract(args, o)
        except AssertionError as exc:
            bad.append(f"[{kind}] {str(exc)[:400]}")

    def scenario(text: str, tally: Counter) -> None:
        with with_file(text, ".toml") as path:
            case("scenario", ["check", "--kernel", "v5.11", "--scenario", path, *BOUNDS], tally)

    def variant(text: str, tally: Counter) -> None:
        with with_file(text, ".py") as path:
            case("variant", ["check", "--kernel", path, "--scenario", "next-root-deleted",
                             *BOUNDS], tally)

    def tok(t: str, tally: Counter) -> None:
        case("token", ["replay", "--kernel", "v5.10", "--scenario", "next-root-deleted",
                       "--max-steps", "2000", "--schedule", t], tally)

    def command(a: list[str], tally: Counter) -> None:
        case("argv", a + BOUNDS if a[:1] == ["check"] else a, tally)

    total = 0
    for kind, strategy, fn in (("scenario files", scenario_text, scenario),
                               ("variant files", variant_text(), variant),
                               ("schedule tokens", token, tok),
                               ("command lines", argv(), command)):
        tally: Counter = Counter()
        t0, c0 = time.perf_counter(), time.process_time()

        drive_one(strategy, fn, tally, cfg, opts.seed)
        n = sum(tally.values())
        total += n
        print(f"{kind}: {n} cases in {time.perf_counter() - t0:.1f} s wall, "
              f"{time.process_time() - c0:.1f} s CPU")
        for what, count in tally.most_common(12):
            print(f"  {count:5d}  {what}")
        if len(tally) > 12:
            print(f"  {sum(c for _, c in tally.most_common()[12:]):5d}  ({len(tally) - 12} "
                  "other outcomes)")
    print(f"\n{total} cases, {len(bad)} broke the contract")
    for b in bad[:20]:
        print("  " + b.replace("\n", "\n    "))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
