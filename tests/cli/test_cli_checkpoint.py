"""``--checkpoint`` / ``--resume``: a stopped search goes on where it stopped, and a
resumed run ends with the counts of an uninterrupted one."""

from __future__ import annotations

import json

from test_cli_main import assert_bad_input, tdpmmu

CHECK = ("check", "--kernel", "v5.11", "--scenario", "notifier-vs-unload", "-j", "1",
         "--strategy", "source-dpor")


def test_resumed_equals_uninterrupted(tmp_path):
    whole = json.loads(tdpmmu(*CHECK, "--json").stdout)
    assert whole["complete"]
    f = str(tmp_path / "search.json")
    first = tdpmmu(*CHECK, "--json", "--max-executions", "150", "--checkpoint", f)
    assert json.loads(first.stdout)["executions"] == 150
    assert "saved" in first.stderr
    second = tdpmmu(*CHECK, "--json", "--max-executions", "100", "--resume", f,
                    "--checkpoint", f)
    assert json.loads(second.stdout)["executions"] == 250
    last = json.loads(tdpmmu("check", "--resume", f, "--json").stdout)
    for key in ("executions", "complete", "cut_by", "violation", "sleep_blocked"):
        assert last.get(key) == whole.get(key), key


def test_resumed_dpor_equals_uninterrupted(tmp_path):
    """Optimal dpor: the checkpoint carries the wakeup trees."""
    check = CHECK[:-1] + ("dpor",)
    whole = json.loads(tdpmmu(*check, "--json").stdout)
    assert whole["complete"]
    f = str(tmp_path / "search.json")
    first = tdpmmu(*check, "--json", "--max-executions", "120", "--checkpoint", f)
    assert json.loads(first.stdout)["executions"] == 120
    with open(f) as fh:
        saved = json.load(fh)
    assert any(len(n) == 8 and n[7]["wut"] is not None for n in saved["nodes"])
    last = json.loads(tdpmmu("check", "--resume", f, "--json").stdout)
    for key in ("executions", "complete", "cut_by", "violation", "sleep_blocked"):
        assert last.get(key) == whole.get(key), key


def test_checkpoint_with_jobs_runs_in_one_process_and_says_so(tmp_path):
    """-j 2 with --checkpoint: the search (the default dpor) runs in one process,
    stderr says so, and stopping and resuming it still ends with the counts of
    an uninterrupted -j 2 run (which splits it)."""
    check = ("check", "--kernel", "v5.11", "--scenario", "notifier-vs-unload", "-j", "2")
    whole = json.loads(tdpmmu(*check, "--json").stdout)
    assert whole["complete"] and whole["strategy"] == "dpor"
    f = str(tmp_path / "search.json")
    first = tdpmmu(*check, "--json", "--max-executions", "100", "--checkpoint", f)
    assert "run the search in one process" in first.stderr
    assert json.loads(first.stdout)["executions"] == 100
    last = json.loads(tdpmmu(*check, "--resume", f, "--json").stdout)
    for key in ("executions", "complete", "cut_by", "violation", "sleep_blocked"):
        assert last.get(key) == whole.get(key), key


def test_time_limit_writes_a_checkpoint(tmp_path):
    f = tmp_path / "t.json"
    proc = tdpmmu("check", "--kernel", "v5.11", "--scenario", "seed-bug", "--json",
                  "--strategy", "source-dpor", "--time-limit", "0.5", "--checkpoint", str(f))
    d = json.loads(proc.stdout)
    assert d["cut_by"] == "time_limit" and not d["complete"]
    saved = json.loads(f.read_text())
    assert saved["format"] == "tdpmmu-checkpoint" and saved["version"] == 1
    assert saved["counts"]["executions"] == d["executions"]


def test_corrupted_checkpoint_is_a_one_line_error(tmp_path):
    f = tmp_path / "c.json"
    tdpmmu(*CHECK, "--max-executions", "5", "--checkpoint", str(f))
    data = json.loads(f.read_text())
    data["counts"]["executions"] += 1
    f.write_text(json.dumps(data))
    assert_bad_input(tdpmmu("check", "--resume", str(f)), "checksum mismatch")


def test_foreign_file_is_a_one_line_error(tmp_path):
    f = tmp_path / "other.json"
    f.write_text('{"hello": 1}')
    assert_bad_input(tdpmmu("check", "--resume", str(f)), "not a tdpmmu checkpoint")
    f.write_text("\x00garbage")
    assert_bad_input(tdpmmu("check", "--resume", str(f)), "not a tdpmmu checkpoint")


def test_resume_of_another_check_is_refused(tmp_path):
    f = tmp_path / "c.json"
    tdpmmu(*CHECK, "--max-executions", "5", "--checkpoint", str(f))
    assert_bad_input(tdpmmu("check", "--resume", str(f), "--kernel", "v5.10"),
                     "--kernel v5.11")
