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


def _harness_names() -> set[str]:
    """Functions of the scenario harness (the actions, the thread bodies): they run
    the kernel but are no part of it, so oops call traces leave them out."""
    from ..scenarios import actions
    names = {f.__code__.co_name for f in vars(actions).values()
             if callable(f) and hasattr(f, "__code__") and f.__module__ == actions.__name__}
    return names | {"thread", "_run_action", "setup", "make_thread"}


def report_details(v: Any) -> list[str]:
    """A finding's detail lines, the harness's frames left out of its call traces."""
    harness = _harness_names()
    return [d for d in v.details if not (d.startswith(" ") and d.strip() in harness)]


def header(v: Violation) -> list[str]:
    return [v.message] + [f"  {d}" if d else "" for d in report_details(v)]


def terminal_width() -> int:
    """The terminal's width as rich measures it (``COLUMNS`` when not a terminal)."""
    from rich.console import Console
    return Console().width


def _cell(st: Step, flags: list[str]) -> str:
    funcs = step_functions(st, depth=1)
    text = st.label if not funcs or st.label.startswith(funcs[0]) \
        else f"{funcs[0]}: {st.label}"
    # A step is its visible operation and the code after it: a note is what that
    # code did, credited to the function that did it.
    lines = [text, *(f"+ {m}" for m in st.marks), *flags]
    return "\n".join(lines)


def trace_table(v: Violation, threads: list[str], width: int | None = None) -> list[str]:
    """One row per step: the acting thread's column holds its kernel function and
    operation, then what the step's code did after it (reference notes), then a
    ``<==`` line where a property broke or the finding fired; the last column
    is the roots list after the step.  Columns fit ``width`` by wrapping, never
    by cutting; when the roots column leaves too little room, the roots go on
    a ``= roots ...`` line in the acting cell where they change."""
    from io import StringIO

    from rich import box
    from rich.console import Console
    from rich.table import Table

    width = width or terminal_width()
    col = {name: i for i, name in enumerate(threads)}
    root_step = v.root_cause.step if v.root_cause is not None else None
    cells_of: list[tuple[int, list[str], str, bool]] = []
    last_roots = None
    for st in v.trace:
        flags = []
        if root_step is not None and st.index == root_step:
            flags.append("<== " + v.root_cause.message.split(":")[0] + " broken here")
        if st.index == _finding_step(v):
            where = f" in {v.function}" if v.function else ""
            flags.append(f"<== {kind_of(v)}{where}")
        cells = [""] * len(threads)
        cells[col.get(st.thread, 0)] = _cell(st, flags)
        roots = roots_text(st.observed) if st.observed is not None else ""
        cells_of.append((st.index, cells, roots, roots != last_roots))
        last_roots = roots
    # A column is never narrower than its longest operation with an argument
    # (``spin_unlock(kvm->mmu_lock)``, an address): those are not split.
    mins = []
    for i in range(len(threads)):
        facts = [w for _s, cells, _r, _c in cells_of for w in cells[i].split()
                 if "(" in w or "0x" in w]
        mins.append(min(max((len(w) for w in facts), default=0), 40))
    roots_min = 8
    inline_roots = 4 + sum(mins) + 3 * len(threads) + 3 + roots_min + 2 > width
    # Column widths by hand (content only; each separator takes 3): every thread
    # column gets its minimum, the rest is shared, a quarter of a share to roots.
    roots_w = 0
    spare = width - 4 - 3 * len(threads) - sum(mins)
    if not inline_roots:
        roots_w = max(roots_min, min(spare // (4 * len(threads) + 1),
                                     max((len(r) for _i, _c, r, _ch in cells_of), default=0)))
        spare -= roots_w + 3
    widths = _share(width - 4 - 3 * len(threads) - (roots_w + 3 if roots_w else 0), mins)
    table = Table(box=box.ASCII2, show_edge=False, pad_edge=False, padding=(0, 1))
    table.add_column("step", justify="right", no_wrap=True, width=4)
    for t, w in zip(threads, widths, strict=True):
        table.add_column(t, overflow="fold", width=w)
    if not inline_roots:
        table.add_column("roots", overflow="fold", width=roots_w)
    for index, cells, roots, changed in cells_of:
        if inline_roots:
            if changed:
                acting = next(i for i, c in enumerate(cells) if c)
                cells[acting] += f"\n= roots {roots}"
            table.add_row(str(index), *cells)
        else:
            table.add_row(str(index), *cells, roots if changed else '"')
    buf = StringIO()
    Console(file=buf, width=width, color_system=None, highlight=False, markup=False,
            emoji=False, legacy_windows=False).print(table)
    return [line.rstrip() for line in buf.getvalue().splitlines()]


def _share(room: int, mins: list[int], cap: int = 64) -> list[int]:
    """Column widths as equal as their minimums allow, each at most ``cap``
    (unless its minimum is larger)."""
    widths = list(mins)
    free = [i for i in range(len(mins))]
    while free:
        each = (room - sum(widths[i] for i in range(len(mins)) if i not in free)) // len(free)
        tight = [i for i in free if mins[i] > each]
        if not tight:
            for i in free:
                widths[i] = max(min(each, cap), mins[i])
            break
        free = [i for i in free if i not in tight]
    return widths


def _finding_step(v: Violation) -> int:
    """The step a finding belongs to: where a property broke, else the last one."""
    if v.step is not None and v.step < len(v.trace):
        return v.step
    return len(v.trace) - 1


def violation_report(res: Any, explain: bool = False, width: int | None = None) -> str:
    """The full report of a check or replay that found a violation."""
    v = res.violation
    r = res.result
    lines = header(v)
    width = width or terminal_width()
    if v.root_cause is not None:
        rc = v.root_cause
        lines += ["", *_wrap(f"Root cause (step {rc.step}, {rc.thread}): {rc.message}", width)]
        lines += [f"  {d}" for d in rc.details[1:]]
    if explain:
        from .explain import explain_text
        lines += ["", explain_text(res, width)]
    how = (f"found by {res.strategy} after {r.executions} executions in {r.elapsed:.2f} s"
           if res.strategy != "replay" else "replayed")
    lines += ["", *_wrap(f"Interleaving: {v.steps} steps, {v.preemptions} preemptions "
                         f"(kernel {res.kernel}, scenario {res.scenario}{_knobs(res)}; {how})",
                         width), ""]
    lines += trace_table(v, res.thread_names, width)
    lines += ["", "Replay:", f"  {replay_command(res)}"]
    return "\n".join(lines)


def _wrap(text: str, width: int) -> list[str]:
    """Wrapped at spaces only: an address or a lock name is never split."""
    import textwrap
    return textwrap.wrap(text, width, subsequent_indent="  ", break_long_words=False,
                         break_on_hyphens=False) or [""]


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


def summary_lines(res: Any, first: bool, width: int | None = None) -> list[str]:
    """The main job's table row of one check (the header before the first): the
    result comes last and wraps under itself, so it is never cut."""
    import textwrap
    kernel, scenario, result, execs, secs = summary_row(res)
    width = width or terminal_width()
    lead = f"{kernel:<14}  {scenario:<24}  {execs:>10}  {secs:>8}  "
    out = []
    if first:
        out.append(f"{'kernel':<14}  {'scenario':<24}  {'executions':>10}  {'time (s)':>8}  "
                   "result")
        out.append("-" * min(width, len(out[0]) + 30))
    room = width - len(lead)
    if room >= 30:
        wrapped = textwrap.wrap(result, room, break_long_words=False, break_on_hyphens=False)
        out.append(lead + (wrapped[0] if wrapped else ""))
        out += [" " * len(lead) + more for more in wrapped[1:]]
    else:  # a narrow terminal: the result on its own lines under the row
        out.append(lead.rstrip())
        out += textwrap.wrap(result, width - 4, initial_indent="    ",
                             subsequent_indent="    ", break_long_words=False,
                             break_on_hyphens=False)
    return out
