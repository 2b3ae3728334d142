"""Property-based fuzzing of everything a user hands the tool: scenario files,
variant files, schedule tokens and command lines.  Whatever they hold, the
tool exits 0/1 with a report or 2 with one line, and never with a traceback
(see fuzz_inputs.py; bench/fuzz.py runs the same cases for longer)."""

from __future__ import annotations

from fuzz_inputs import (
    BOUNDS,
    argv,
    check_contract,
    run,
    scenario_text,
    token,
    variant_text,
    with_file,
)
from hypothesis import HealthCheck, given, settings

# Bounded for CI; the deadline is off because a case runs the model checker.
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(text=scenario_text)
def test_any_scenario_file(text):
    with with_file(text, ".toml") as path:
        args = ["check", "--kernel", "v5.11", "--scenario", path, *BOUNDS]
        check_contract(args, run(args))


@FUZZ
@given(text=variant_text())
def test_any_variant_file(text):
    with with_file(text, ".py") as path:
        args = ["check", "--kernel", path, "--scenario", "next-root-deleted", *BOUNDS]
        check_contract(args, run(args))


@FUZZ
@given(tok=token)
def test_any_schedule_token(tok):
    args = ["replay", "--kernel", "v5.10", "--scenario", "next-root-deleted", "--max-steps",
            "2000", "--schedule", tok]
    check_contract(args, run(args))


@FUZZ
@given(args=argv())
def test_any_command_line(args):
    if args[:1] in ([], ["check"]):  # no command is `check`: the main job, bounded here
        args = ["check", *args[1:], *BOUNDS]
    check_contract(args, run(args))
