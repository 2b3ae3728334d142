"""Stopping a search (Ctrl-C, ``--time-limit``) into a file, and resuming it.

A tree search (dfs, dpor) is, between two executions, its stack of nodes: the
choice taken at each, the alternatives found and explored, the sleep set (and
for optimal dpor the wakeup tree still to explore).
That stack and the counts so far are written as JSON, with a format name, a
version and a SHA-256 of the rest, so a file that is not one, or was changed,
is refused in one line.  Resuming loads the stack into a fresh strategy, which
goes on exactly where the stopped one would have: the executions of the
stopped run and of the resumed one add up to those of one uninterrupted run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from .. import engine
from ..checker import UserError, check
from ..engine.explore import _make_strategy
from ..engine.strategies.tree import TreeStrategy
from .split import decode_node, encode_node

FORMAT = "tdpmmu-checkpoint"
VERSION = 1
RESUMABLE = ("dfs", "dpor", "source-dpor")  # dpor nodes carry their wakeup trees
CHECK_FIELDS = ("kernel", "scenario", "strategy", "knobs", "max_steps", "kasan",
                "panic_on_warn")


def _digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def save(path: str, spec: dict, strategy: TreeStrategy, counts: dict) -> None:
    body = {"format": FORMAT, "version": VERSION, "check": spec, "counts": counts,
            "nodes": [encode_node(n) for n in strategy.nodes]}
    data = dict(body, sha256=_digest(body))
    tmp = Path(path + ".tmp")
    try:
        tmp.write_text(json.dumps(data) + "\n")
        tmp.replace(path)  # never a half-written checkpoint in place of a good one
    except OSError as exc:
        raise UserError(f"--checkpoint {path}: {exc.strerror}") from None


def load(path: str) -> dict:
    """The checkpoint in ``path``; any problem is a :class:`UserError` saying what."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UserError(f"--resume {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"--resume {path}: not a tdpmmu checkpoint (not JSON)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"--resume {path}: not a tdpmmu checkpoint")
    if data.get("version") != VERSION:
        raise UserError(f"--resume {path}: checkpoint version {data.get('version')!r}, "
                        f"this tdpmmu reads version {VERSION}")
    body = {k: v for k, v in data.items() if k != "sha256"}
    if data.get("sha256") != _digest(body):
        raise UserError(f"--resume {path}: checksum mismatch (the file was changed or "
                        f"truncated)")
    try:
        spec, counts, nodes = data["check"], data["counts"], data["nodes"]
        [spec[k] for k in CHECK_FIELDS]  # noqa: B018 - present, or KeyError below
        [int(counts[k]) for k in ("executions", "sleep_blocked", "max_depth")]
        decoded = [decode_node(n) for n in nodes]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"--resume {path}: checkpoint lacks a field it needs") from None
    data["decoded"] = decoded
    return data


def restore(spec: dict, decoded: list) -> TreeStrategy:
    strat = _make_strategy(spec["strategy"], None, None, 0)
    assert isinstance(strat, TreeStrategy)
    strat.nodes = decoded
    strat.started = True
    return strat


def checkpoint_command(args: argparse.Namespace, knobs: dict[str, str], kernels: list[str],
                       scenarios: list[str]) -> int:
    from ..cli import report_results
    from .command import INTERRUPTED
    from .progress import check_bar
    saved: dict[str, Any] = {"executions": 0, "sleep_blocked": 0, "max_depth": 0,
                             "elapsed": 0.0}
    if args.resume:
        data = load(args.resume)
        spec = data["check"]
        for given, key in ((args.kernel, "kernel"), (args.scenario, "scenario")):
            if given and given != [spec[key]]:
                raise UserError(f"--resume {args.resume}: the search saved there is of "
                                f"--{key} {spec[key]}, not {' '.join(given)}")
        saved.update(data["counts"])
        strat = restore(spec, data["decoded"])
    else:
        if len(kernels) != 1 or len(scenarios) != 1:
            raise UserError("--checkpoint saves one search: give one --kernel and one "
                            "--scenario")
        if args.strategy not in RESUMABLE:
            raise UserError(f"--checkpoint applies to --strategy dfs, dpor or source-dpor, "
                            f"not {args.strategy}")
        spec = {"kernel": kernels[0], "scenario": scenarios[0], "strategy": args.strategy,
                "knobs": knobs, "max_steps": args.max_steps, "kasan": args.kasan,
                "panic_on_warn": args.panic_on_warn}
        strat = _make_strategy(args.strategy, None, None, 0)
    deadline = time.monotonic() + args.time_limit if args.time_limit else None
    interrupted = []

    def on_sigint(signum: int, frame: Any) -> None:
        interrupted.append(True)  # stop at the next execution boundary, state intact

    def stop() -> str | None:
        if interrupted:
            return "interrupted"
        if deadline is not None and time.monotonic() >= deadline:
            return "time_limit"
        return None

    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        with check_bar(f"{spec['kernel']} / {spec['scenario']}", quiet=args.json) as bar:
            if bar is not None:
                bar.watch(strat)
            res = check(spec["kernel"], spec["scenario"], strategy=strat,
                        knobs=dict(spec["knobs"]), max_executions=args.max_executions,
                        max_steps=spec["max_steps"], kasan=spec["kasan"],
                        panic_on_warn=spec["panic_on_warn"], stop=stop,
                        progress=None if bar is None else bar.tick)
    finally:
        signal.signal(signal.SIGINT, old)
    r = res.result
    counts = {"executions": saved["executions"] + r.executions,
              "sleep_blocked": saved["sleep_blocked"] + r.sleep_blocked,
              "max_depth": max(saved["max_depth"], r.max_depth),
              "elapsed": float(saved.get("elapsed", 0.0)) + r.elapsed}
    res.result = engine.Result(strategy=r.strategy, executions=counts["executions"],
                               complete=r.complete, violation=r.violation,
                               elapsed=counts["elapsed"], cut_by=r.cut_by,
                               sleep_blocked=counts["sleep_blocked"],
                               max_depth=counts["max_depth"])
    stopped = r.cut_by in ("interrupted", "time_limit", "max_executions") \
        and r.violation is None
    if stopped and args.checkpoint:
        save(args.checkpoint, spec, strat, counts)
        print(f"tdpmmu: search stopped ({r.cut_by}) and saved: resume with "
              f"`tdpmmu check --resume {args.checkpoint}`", file=sys.stderr)
    code = report_results(args, [res], True)
    return INTERRUPTED if r.cut_by == "interrupted" else code
