"""Text reports: an oops-like header, the interleaving with one column per thread,
the roots list after each step, and the command that replays it."""

from __future__ import annotations

import shlex
from typing import Any

from ..engine import Step, Violation
from ..kvm import shared
from .kinds import kind_of

# Model helpers that stand for one kernel statement; a trace names their caller.
_HELPERS = {name for name in vars(shared) if callable(getattr(shared, name))} | {
    "thread", "_run_action"}
COLUMN = 52


def replay_command(res: Any) -> str:
    """The command line that re-runs exactly this interleaving."""
    v = res.violation
    parts = ["tdpmmu", "replay", "--kernel", res.kernel_spec, "--scenario", res.scenario_spec]
    for name, choice in sorted(res.knobs.items()):
        parts += ["--knob", f"{name}={choice}"]
    if not res.kasan:
        parts.append("--no-kasan")
    if not res.panic_on_warn:
        parts.append("--no-panic-on-warn")
    parts += ["--schedule", v.schedule]
    return " ".join(shlex.quote(p) for p in parts)


def step_functions(step: Step, depth: int = 2) -> list[str]:
    """The innermost model functions of a step, helpers left out."""
    names = [n for n in step.stack if n not in _HELPERS and not n.startswith("<")]
    return names[-depth:]


def roots_text(observed: Any) -> str:
    if not observed:
        return "(none)"
    return " ".join(f"{name}[{role}]:{count}{'(freed)' if freed else ''}"
                    for name, role, count, freed in observed)


def header(v: Violation) -> list[str]:
    return [v.message] + [f"  {d}" if d else "" for d in v.details]


def trace_table(v: Violation, threads: list[str]) -> list[str]:
    """One row per step: the acting thread's column holds its kernel functions and
    operation; the last column is the roots list after the step."""
    col = {name: i for i, name in enumerate(threads)}
    head = "step | " + " | ".join(t.ljust(COLUMN) for t in threads) + " | roots after the step"
    rule = "-" * len(head)
    out = [head, rule]
    last_roots = None
    root_step = v.root_cause.step if v.root_cause is not None else None
    for st in v.trace:
        cells = [""] * len(threads)
        funcs = step_functions(st, depth=1)
        text = st.label if not funcs or st.label.startswith(funcs[0]) \
            else f"{funcs[0]}: {st.label}"
        cells[col.get(st.thread, 0)] = text
        extra = list(st.marks)
        roots = roots_text(st.observed) if st.observed is not None else ""
        shown_roots = roots if roots != last_roots else '"'
        last_roots = roots
        flags = []
        if root_step is not None and st.index == root_step:
            flags.append("<== " + v.root_cause.message.split(":")[0] + " broken here")
        if st.index == _finding_step(v):
            where = f" in {v.function}" if v.function else ""
            flags.append(f"<== {kind_of(v)}{where}")
        out.append(_row(st.index, cells, shown_roots, flags))
        for mark in extra:
            sub = [""] * len(threads)
            sub[col.get(st.thread, 0)] = f"  ({mark})"
            out.append(_row(None, sub, "", []))
    return out


def _finding_step(v: Violation) -> int:
    """The step a finding belongs to: where a property broke, else the last one."""
    if v.step is not None and v.step < len(v.trace):
        return v.step
    return len(v.trace) - 1


def _row(index: int | None, cells: list[str], roots: str, flags: list[str]) -> str:
    num = f"{index:4d}" if index is not None else "    "
    body = " | ".join(_fit(c) for c in cells)
    tail = f" | {roots}" if roots else " |"
    return f"{num} | {body}{tail}" + (f"   {' '.join(flags)}" if flags else "")


def _fit(text: str) -> str:
    if len(text) > COLUMN:
        text = text[:COLUMN - 1] + "…"
    return text.ljust(COLUMN)


def violation_report(res: Any, explain: bool = False) -> str:
    """The full report of a check or replay that found a violation."""
    v = res.violation
    r = res.result
    lines = header(v)
    if v.root_cause is not None:
        rc = v.root_cause
        lines += ["", f"Root cause (step {rc.step}, {rc.thread}): {rc.message}"]
        lines += [f"  {d}" for d in rc.details[1:]]
    if explain:
        from .explain import explain_text
        lines += ["", explain_text(res)]
    how = (f"found by {res.strategy} after {r.executions} executions in {r.elapsed:.2f} s"
           if res.strategy != "replay" else "replayed")
    lines += ["", f"Interleaving: {v.steps} steps, {v.preemptions} preemptions "
              f"(kernel {res.kernel}, scenario {res.scenario}{_knobs(res)}; {how})", ""]
    lines += trace_table(v, res.thread_names)
    lines += ["", "Replay:", f"  {replay_command(res)}"]
    return "\n".join(lines)


def ok_report(res: Any) -> str:
    r = res.result
    verdict = "verified: no violation in any interleaving" if r.complete else \
        f"no violation found (search incomplete: cut by {r.cut_by or 'the strategy'})"
    return (f"{res.kernel} on {res.scenario}{_knobs(res)}: {verdict}\n"
            f"  strategy {res.strategy}, {r.executions} executions "
            f"({r.sleep_blocked} sleep-set blocked), longest {r.max_depth} steps, "
            f"{r.elapsed:.2f} s")


def _knobs(res: Any) -> str:
    if not res.knobs:
        return ""
    return " with " + ", ".join(f"{k}={v}" for k, v in sorted(res.knobs.items()))


def summary_row(res: Any) -> tuple[str, str, str, str, str]:
    """(kernel, scenario, result, executions, time) for the main job's table."""
    r = res.result
    if res.violation is not None:
        v = res.violation
        result = f"{kind_of(v)}: {v.message}"
        if v.function and v.function not in result:
            result += f" [{v.function}]"
    elif r.complete:
        result = "verified"
    else:
        result = f"no violation (cut by {r.cut_by})"
    return (res.kernel + _knobs(res), res.scenario, result, str(r.executions),
            f"{r.elapsed:.2f}")
