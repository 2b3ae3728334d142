"""A self-contained HTML page for a finding: the story of the interleaving.

One CSS grid, one row per step.  Each thread has a column of its steps' labels
and, left of it, one narrow column per lock it takes, where a bar spans the
rows from the step that took the lock to the step that released it (colour:
exclusive / read-side / SRCU / RCU / mutex).  Each root has a strip: one
segment per stretch of steps with the same root_count and state (on the list,
off it, freed).  The root-cause and failing steps are marked and explained in
a legend; hover a step for its full model stack, click it to keep the stack
open.  A long trace whose steps repeat (a livelock's cycles) shows the first
cycles and the last, and one row saying how many were folded.

No network, no external file; every string from the model or the user is
escaped.  Geometry comes from the grid alone (no script positions anything),
so the page lays out the same with scripts off.
"""

from __future__ import annotations

import re
from html import escape
from typing import Any

from .explain import narrative
from .kinds import kind_of
from .story import Hold, holds, root_counts
from .text import replay_command, report_details, roots_text, step_functions

MODE_COLOUR = {"spin": "#2a62b8", "write": "#17408a", "read": "#8db4ec", "mutex": "#7a7a7a",
               "srcu": "#e8912d", "rcu": "#d8c02a"}
MODE_TEXT = {"spin": "spinlock held", "write": "held for write", "read": "held for read",
             "mutex": "mutex held", "srcu": "SRCU read-side section",
             "rcu": "RCU read-side section"}
STATE_COLOUR = {"listed": "#cfe8c6", "unlisted": "#dddddd", "freed": "#444444"}
ZERO_COLOUR = "#f4a3a3"  # on the list with root_count 0
FOLD_AFTER = 300  # traces longer than this have their repeated cycles folded

_CSS = """
body{font-family:system-ui,sans-serif;margin:1em 1.5em;color:#222}
pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap;overflow-wrap:anywhere}
#trace{display:grid;column-gap:2px;width:100%;font:12px/1.35 monospace}
#trace>div{min-width:0}
.hd{font-weight:bold;position:sticky;top:0;background:#fff;border-bottom:1px solid #999;
 padding:2px 3px;z-index:2;overflow-wrap:anywhere}
.hd.lk,.hd.rt{writing-mode:vertical-rl;font-weight:normal;font-size:11px}
.num{color:#666;text-align:right;padding:2px 4px;z-index:1}
.lbl{padding:2px 4px;border-radius:3px;cursor:pointer;overflow-wrap:anywhere;z-index:1}
.lbl .note{color:#555}
.lbl .stack{display:none;color:#333;background:#fff8d8;border:1px solid #ccb;padding:2px}
.lbl.open .stack{display:block}
.rowbg{z-index:0}
.rc{background:#ffe2b3}
.fail{background:#ffc9c9}
.rcmark{border-left:4px solid #e07b00}
.failmark{border-left:4px solid #c00000}
.bar{border-radius:3px;margin:0 2px;z-index:1}
.seg{font-size:10px;text-align:center;border-top:1px solid #fff;z-index:1;
 overflow:hidden;color:#222}
.seg.freed{color:#fff}
.fold{grid-column:1/-1;background:#eef;padding:4px;text-align:center;font-style:italic}
.legend span{display:inline-block;margin-right:1.2em}
.sw{display:inline-block;width:1.2em;height:.9em;vertical-align:middle;margin-right:.3em;
 border-radius:2px}
"""

_JS = """
for (const el of document.querySelectorAll('.lbl')) {
  el.addEventListener('click', () => el.classList.toggle('open'));
}
"""


def _steps_shown(trace: list[Any]) -> tuple[list[int], dict[int, int], list[tuple[int, str]]]:
    """(steps shown, step -> grid row, folded rows as (row, text))."""
    n = len(trace)
    shown = list(range(n))
    folds: list[tuple[int, str]] = []
    if n > FOLD_AFTER:
        region = _longest_cycle(trace)
        if region is not None:
            start, period, reps = region
            keep_head = start + 2 * period
            keep_tail = start + (reps - 1) * period
            if keep_tail > keep_head:
                shown = list(range(keep_head)) + list(range(keep_tail, n))
                folds.append((keep_tail, f"... {(keep_tail - keep_head) // period} more "
                              f"repetitions of the {period} steps "
                              f"{start}-{start + period - 1} (steps {keep_head}-"
                              f"{keep_tail - 1}) folded ..."))
    row_of: dict[int, int] = {}
    row = 2  # row 1 is the header
    fold_rows: list[tuple[int, str]] = []
    fold_at = {f[0]: f[1] for f in folds}
    for i in shown:
        if i in fold_at:
            fold_rows.append((row, fold_at[i]))
            row += 1
        row_of[i] = row
        row += 1
    # Steps folded away map onto the fold row, so a bar over them stays whole.
    for i in range(n):
        if i not in row_of:
            row_of[i] = fold_rows[0][0] if fold_rows else 2
    return shown, row_of, fold_rows


def _signature(st: Any) -> tuple[str, str, tuple[str, ...]]:
    return (st.thread, st.label, tuple(re.sub(r"\d+", "#", m) for m in st.marks))


def _longest_cycle(trace: list[Any], longest: int = 64) -> tuple[int, int, int] | None:
    """(start, period, repetitions) of the longest stretch of repeated steps."""
    sig = [_signature(st) for st in trace]
    best: tuple[int, int, int] | None = None
    best_len = 0
    for p in range(1, longest + 1):
        run = 0
        for j in range(len(sig) - p):
            run = run + 1 if sig[j] == sig[j + p] else 0
            if run and (run + p) // p >= 3 and run + p > best_len:
                start = j - run + 1
                best = (start, p, (run + p) // p)
                best_len = run + p
    return best


def _legend(holds_: list[Hold]) -> str:
    modes = sorted({h.mode for h in holds_}, key=list(MODE_COLOUR).index)
    items = [f'<span><i class="sw" style="background:{MODE_COLOUR[m]}"></i>'
             f'{escape(MODE_TEXT[m])}</span>' for m in modes]
    items += [f'<span><i class="sw" style="background:{STATE_COLOUR["listed"]}"></i>'
              'root on the list (its root_count in the strip)</span>',
              f'<span><i class="sw" style="background:{ZERO_COLOUR}"></i>'
              'on the list with root_count 0</span>',
              f'<span><i class="sw" style="background:{STATE_COLOUR["unlisted"]}"></i>'
              'off the list</span>',
              f'<span><i class="sw" style="background:{STATE_COLOUR["freed"]}"></i>'
              'freed</span>',
              '<span><i class="sw rc rcmark"></i>root-cause step (a property broke)</span>',
              '<span><i class="sw fail failmark"></i>failing step (the finding)</span>']
    return '<p class="legend">' + "".join(items) + "</p>"


def to_html(res: Any) -> str:
    v = res.violation
    trace = v.trace
    threads = list(res.thread_names)
    for st in trace:
        if st.thread not in threads:
            threads.append(st.thread)
    hs = holds(trace)
    counts = root_counts(trace)
    shown, row_of, fold_rows = _steps_shown(trace)
    root_step = v.root_cause.step if v.root_cause is not None else None
    final = v.step if v.step is not None and v.step < len(trace) else len(trace) - 1

    # Grid columns: step number | per thread: its locks, its labels | per root: a strip.
    locks_of = {t: list(dict.fromkeys(h.lock for h in hs if h.thread == t)) for t in threads}
    cols = ["max-content"]
    col_lock: dict[tuple[str, str], int] = {}
    col_label: dict[str, int] = {}
    for t in threads:
        for lock in locks_of[t]:
            cols.append("14px")
            col_lock[(t, lock)] = len(cols)
        cols.append("minmax(0,1fr)")
        col_label[t] = len(cols)
    col_root: dict[str, int] = {}
    for root in counts:
        cols.append("2.2em")
        col_root[root] = len(cols)
    cells: list[str] = []

    def cell(col: int | str, row: int | str, cls: str, body: str = "", attrs: str = "",
             style: str = "") -> None:
        cells.append(f'<div class="{cls}" style="grid-column:{col};grid-row:{row}{style}"'
                     f"{attrs}>{body}</div>")

    cell(1, 1, "hd", "step")
    for t in threads:
        for lock in locks_of[t]:
            cell(col_lock[(t, lock)], 1, "hd lk", escape(lock), f' title="{escape(lock)}"')
        cell(col_label[t], 1, "hd", escape(t))
    for root, c in col_root.items():
        cell(c, 1, "hd rt", f"root {escape(root)}")

    for i in shown:
        st = trace[i]
        row = row_of[i]
        mark = ""
        if i == final:
            mark = " fail failmark"
        elif i == root_step:
            mark = " rc rcmark"
        if mark:
            cell("1/-1", row, "rowbg" + mark)
        cell(1, row, "num", str(i), f' data-step="{i}"')
        funcs = step_functions(st, depth=1)
        text = st.label if not funcs or st.label.startswith(funcs[0]) \
            else f"{funcs[0]}: {st.label}"
        flags = []
        if i == root_step:
            flags.append(f"&lt;== {escape(v.root_cause.message.split(':')[0])} broken here")
        if i == final:
            where = f" in {v.function}" if v.function else ""
            flags.append(f"&lt;== {escape(kind_of(v) + where)}")
        stack = " &gt; ".join(escape(n) for n in step_functions(st, depth=64))
        roots = roots_text(st.observed) if st.observed is not None else "-"
        tip = "\n".join([f"step {i} ({st.thread}): {st.label}",
                         " > ".join(step_functions(st, depth=64)), *st.marks,
                         f"roots after: {roots}"])
        body = (escape(text) + "".join(f'<div class="note">+ {escape(m)}</div>'
                                       for m in st.marks)
                + "".join(f"<div><b>{f}</b></div>" for f in flags)
                + f'<div class="stack">{stack}<br>roots after: {escape(roots)}</div>')
        cell(col_label.get(st.thread, 2), row, "lbl", body,
             f' data-step="{i}" title="{escape(tip)}"')
    for row, text in fold_rows:
        cells.append(f'<div class="fold" style="grid-row:{row}">{escape(text)}</div>')

    for h in hs:
        title = f"{h.thread}: {h.lock} {MODE_TEXT[h.mode]}, steps {h.start}-{h.end}" + (
            "" if h.released else " (never released)")
        cell(col_lock[(h.thread, h.lock)], f"{row_of[h.start]}/{row_of[h.end] + 1}", "bar", "",
             f' data-thread="{escape(h.thread)}"'
             f' data-lock="{escape(h.lock)}" data-mode="{h.mode}" data-start="{h.start}"'
             f' data-end="{h.end}" title="{escape(title)}"', f";background:{MODE_COLOUR[h.mode]}")
    for root, series in counts.items():
        for k, (step, count, state) in enumerate(series):
            end = series[k + 1][0] - 1 if k + 1 < len(series) else len(trace) - 1
            colour = ZERO_COLOUR if state == "listed" and count == 0 else STATE_COLOUR[state]
            label = str(count) if state == "listed" else ("freed" if state == "freed" else "-")
            title = (f"root {root}: {state}" + (f", root_count {count}" if count is not None
                                                 else "") + f", steps {step}-{end}")
            cell(col_root[root], f"{row_of[step]}/{row_of[end] + 1}",
                 "seg" + (" freed" if state == "freed" else ""), escape(label),
                 f' data-root="{escape(root)}"'
                 f' data-start="{step}" data-end="{end}" data-count="{count}"'
                 f' data-state="{state}" title="{escape(title)}"', f";background:{colour}")

    grid = (f'<div id="trace" style="grid-template-columns:{" ".join(cols)}">'
            + "".join(cells) + "</div>")
    rc = ""
    if v.root_cause is not None:
        rc = (f"<p><b>Root cause</b> (step {v.root_cause.step}, "
              f"{escape(str(v.root_cause.thread))}): {escape(v.root_cause.message)}</p>")
    story = "".join(f"<li>{escape(line.split('. ', 1)[1])}</li>" for line in narrative(res))
    return "\n".join([
        "<!doctype html>", "<html><head><meta charset='utf-8'>",
        f"<title>{escape(v.message)}</title>", f"<style>{_CSS}</style></head><body>",
        f"<h2>{escape(v.message)}</h2>",
        f"<p>kernel {escape(res.kernel)}, scenario {escape(res.scenario)}, "
        f"{v.steps} steps, {v.preemptions} preemptions</p>",
        f"<pre>{escape(chr(10).join(report_details(v)))}</pre>", rc,
        f"<h3>What happened</h3><ol>{story}</ol>", _legend(hs), grid,
        f"<p>Replay:</p><pre>{escape(replay_command(res))}</pre>",
        f"<script>{_JS}</script>", "</body></html>"])
