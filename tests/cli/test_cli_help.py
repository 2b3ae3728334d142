"""The help a terminal user meets: --version, defaults on every option, exit codes
and examples in `check --help`, whole scenario descriptions in `show` and `list`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from tdpmmu import __version__
from tdpmmu.cli import build_parser
from tdpmmu.scenarios import builtin_scenario_path, scenario_names
from tdpmmu.scenarios.format import load_scenario


def tdpmmu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tdpmmu.cli", *args], capture_output=True,
                          text=True, env={**os.environ, "CI": "1", "COLUMNS": "80"},
                          timeout=120)


def test_version():
    proc = tdpmmu("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"tdpmmu {__version__}"


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    p = build_parser()
    action = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_option_taking_a_value_says_its_default():
    for name, sub in _subparsers().items():
        for a in sub._actions:
            if not a.option_strings or a.nargs == 0 or isinstance(a, argparse._HelpAction):
                continue
            assert a.help and ("default" in a.help or "required" in a.help), (name,
                                                                                a.option_strings)


def test_check_help_has_exit_codes_and_examples_that_parse():
    proc = tdpmmu("check", "--help")
    assert proc.returncode == 0
    out = proc.stdout
    assert "exit codes: 0 no violation, 1 a violation was found, 2 bad input" in out
    examples = [line.split("  ", 2)[1].split("   ")[0].strip() for line in
                out.split("examples:")[1].splitlines() if line.startswith("  tdpmmu ")]
    assert len(examples) >= 4
    for example in examples:
        build_parser().parse_args(example.split()[1:])  # each one is a valid command line


def test_show_prints_the_whole_description_and_the_threads():
    for name in scenario_names():
        scen = load_scenario(builtin_scenario_path(name))
        proc = tdpmmu("show", name)
        assert proc.returncode == 0, proc.stderr
        assert scen.description in proc.stdout
        for thread, _actions in scen.threads:
            assert f"Thread {thread}: " in proc.stdout


def test_show_unknown_scenario_is_bad_input():
    proc = tdpmmu("show", "no-such")
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert "unknown scenario 'no-such'" in proc.stderr


def test_list_shows_whole_first_sentences():
    out = tdpmmu("list").stdout
    for name in scenario_names():
        line = next(x for x in out.splitlines() if x.startswith(f"  {name} "))
        assert line.rstrip().endswith((".", ")")), line
