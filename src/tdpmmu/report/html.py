"""A self-contained HTML page for a finding: the header, and the interleaving as
an SVG swimlane timeline (one lane per thread, one row per step; hover a step
for its kernel functions and the roots list after it)."""

from __future__ import annotations

from html import escape
from typing import Any

from .text import replay_command, roots_text, step_functions

LANE = 300
ROW = 22
LEFT = 48


def _colour(label: str) -> str:
    if "lock" in label:
        return "#d9e8fb"
    if "spte" in label or "EPT" in label:
        return "#fde9c8"
    if "request" in label or "flush" in label or "TLB" in label:
        return "#e4f4dc"
    return "#eeeeee"


def to_html(res: Any) -> str:
    v = res.violation
    threads = res.thread_names
    lane = {name: i for i, name in enumerate(threads)}
    height = ROW * (len(v.trace) + 2)
    width = LEFT + LANE * len(threads) + 20
    root_step = v.root_cause.step if v.root_cause is not None else None
    final = v.step if v.step is not None and v.step < len(v.trace) else len(v.trace) - 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="monospace" font-size="12">']
    for name, i in lane.items():
        x = LEFT + i * LANE
        parts.append(f'<text x="{x + 4}" y="14" font-weight="bold">{escape(name)}</text>')
        parts.append(f'<line x1="{x}" y1="20" x2="{x}" y2="{height}" stroke="#bbb"/>')
    for st in v.trace:
        y = ROW * (st.index + 1)
        x = LEFT + lane.get(st.thread, 0) * LANE
        stroke = "#c00" if st.index == final else ("#e80" if st.index == root_step else "#999")
        funcs = " > ".join(step_functions(st, depth=64))
        tip = "\n".join([f"step {st.index} ({st.thread}): {st.label}", funcs, *st.marks,
                         "roots: " + (roots_text(st.observed) if st.observed is not None
                                      else "-")])
        text = st.label + (f"  [{'; '.join(st.marks)}]" if st.marks else "")
        parts.append(f'<g><title>{escape(tip)}</title>'
                     f'<rect x="{x + 2}" y="{y + 4}" width="{LANE - 6}" height="{ROW - 4}" '
                     f'rx="3" fill="{_colour(st.label)}" stroke="{stroke}"/>'
                     f'<text x="{x + 6}" y="{y + 18}">{escape(text[:40])}</text></g>')
        parts.append(f'<text x="4" y="{y + 18}" fill="#666">{st.index}</text>')
    parts.append("</svg>")
    rc = ""
    if v.root_cause is not None:
        rc = (f"<p><b>Root cause</b> (step {v.root_cause.step}, "
              f"{escape(str(v.root_cause.thread))}): {escape(v.root_cause.message)}</p>")
    return "\n".join([
        "<!doctype html>", "<html><head><meta charset='utf-8'>",
        f"<title>{escape(v.message)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em} pre{background:#f6f6f6;"
        "padding:.6em}</style></head><body>",
        f"<h2>{escape(v.message)}</h2>",
        f"<p>kernel {escape(res.kernel)}, scenario {escape(res.scenario)}, "
        f"{v.steps} steps, {v.preemptions} preemptions</p>",
        f"<pre>{escape(chr(10).join(v.details))}</pre>", rc, "".join(parts),
        f"<p>Replay:</p><pre>{escape(replay_command(res))}</pre>", "</body></html>"])
