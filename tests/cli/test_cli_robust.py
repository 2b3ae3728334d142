"""The command under stress: broken pipes, Ctrl-C, hostile strings, defaults
that say what they ran."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tdpmmu import checker, cli
from tdpmmu.scenarios import SEED_SCENARIOS, scenario_names


def quick_check(*args, **kwargs):
    kwargs["max_executions"] = 1
    return checker.check(*args, **kwargs)


class ClosedPipe(io.StringIO):
    """A stdout whose reader went away after the first line (`| head -1`)."""

    def write(self, s: str) -> int:
        if "\n" in self.getvalue():
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(s)

    def flush(self) -> None:
        if "\n" in self.getvalue():
            raise BrokenPipeError(32, "Broken pipe")


def test_a_broken_pipe_after_a_bug_keeps_the_bug_exit_code(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert cli.main(["check", "--jobs", "1",
                     "--kernel", "v5.10", "--scenario", "next-root-deleted"]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_a_broken_pipe_without_a_bug_is_not_success(monkeypatch):
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert cli.main(["check", "--jobs", "1",
                     "--kernel", "v5.11", "--scenario", "next-root-deleted"]) == 141


def test_head_after_a_bug_does_not_exit_0(tmp_path):
    exe = Path(sys.executable).with_name("tdpmmu")
    proc = subprocess.run(
        f"'{exe}' check --jobs 1 --kernel v5.10 --kernel v5.10 --scenario next-root-deleted "
        "--scenario next-root-deleted | head -c 10 > /dev/null; echo ${PIPESTATUS[0]}",
        shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip() in ("1", "141"), proc.stdout
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr


def _interrupt_the_second_check(monkeypatch) -> None:
    """Ctrl-C arrives while the CLI runs its second check."""
    calls = []

    def interrupted_second(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return checker.check(*args, **kwargs)

    monkeypatch.setattr(cli, "check", interrupted_second)


def test_ctrl_c_prints_what_finished_with_its_replay_lines_and_exits_130(monkeypatch, capsys):
    _interrupt_the_second_check(monkeypatch)
    rc = cli.main(["check", "--jobs", "1", "--kernel", "v5.10", "--kernel", "v5.11",
                   "--scenario", "next-root-deleted"])
    out, err = capsys.readouterr()
    assert rc == 130
    assert "tdpmmu replay --kernel v5.10 --scenario next-root-deleted --schedule s1." in out
    assert "interrupted" in err and "1 of 2" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_ctrl_c_with_json_prints_the_finished_checks_as_json(monkeypatch, capsys):
    """The rows of a --json run are printed only at the end: an interrupted
    one must still print the checks that finished, not drop them."""
    _interrupt_the_second_check(monkeypatch)
    rc = cli.main(["check", "--jobs", "1", "--json", "--kernel", "v5.10", "--kernel", "v5.11",
                   "--scenario", "next-root-deleted"])
    out, err = capsys.readouterr()
    assert rc == 130
    rows = json.loads(out)
    assert [(r["kernel"], r["scenario"]) for r in rows] == [("v5.10", "next-root-deleted")]
    assert rows[0]["violation"] is not None
    assert "interrupted" in err and "1 of 2" in err


def test_ctrl_c_in_a_single_check_exits_130(monkeypatch, capsys):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "check", interrupt)
    assert cli.main(["check", "--jobs", "1", "--kernel", "v5.11", "--scenario", "seed-bug"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_a_one_line_error_stays_one_line_with_a_newline_in_a_user_string(tmp_path, capsys):
    where = tmp_path / "no\ndir" / "x.html"
    rc = cli.main(["check", "--jobs", "1", "--kernel", "v5.10", "--scenario", "next-root-deleted",
                   "--html", str(where)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "no\\ndir" in err


def test_escape_sequences_never_reach_the_terminal_raw(tmp_path, capsys):
    f = tmp_path / "evil.py"
    f.write_text("from tdpmmu.kvm.versions import V5_10\n\n"
                 "class Evil(V5_10):\n    name = 'evil\\x1b[2J\\x07'\n")
    rc = cli.main(["check", "--jobs", "1", "--kernel", str(f), "--scenario", "next-root-deleted"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert "\x1b" not in out + err and "\x07" not in out + err
    assert "evil\\x1b[2J" in out


def test_check_with_no_arguments_says_which_scenarios_ran_and_why(monkeypatch, capsys):
    monkeypatch.setattr(cli, "check", quick_check)
    cli.main(["check", "--jobs", "1", "--kernel", "v5.11"])
    out = capsys.readouterr().out
    left_out = [n for n in scenario_names() if n not in SEED_SCENARIOS]
    assert left_out, "every built-in scenario is a seed scenario: nothing to say"
    assert "seed thread" in out
    for name in left_out:
        assert name in out
    assert "--scenario" in out


@pytest.mark.parametrize("argv", [["check", "--kernel", "v5.11", "--scenario", "teardown"]])
def test_no_note_when_the_scenarios_are_named(monkeypatch, capsys, argv):
    monkeypatch.setattr(cli, "check", quick_check)
    cli.main(argv)
    assert "not run" not in capsys.readouterr().out
