"""``--explain``: the counterexample as a short story in kernel terms.

Who took and dropped which root reference, who yielded which lock while holding
references, who freed a root, and what broke afterwards, each line naming the
thread, the kernel function and the step.  Built only from
:mod:`tdpmmu.report.story` (the trace's labels and notes), so it reads the same
way for any scenario; runs of the same event (a livelock's cycles) are folded.
"""

from __future__ import annotations

from typing import Any

from .kinds import kind_of
from .story import RefEvent, Yield, ref_events, yields


def _ref_line(e: RefEvent, held: dict[tuple[str, str], int]) -> str:
    who = f"{e.thread} ({e.function})" if e.function else e.thread
    if e.what == "new":
        return f"{who} creates root {e.root} with root_count {e.count}"
    if e.what == "get":
        return f"{who} takes a reference on {e.root} (root_count -> {e.count})"
    if e.what == "put":
        mine = held.get((e.thread, e.root), 0) > 0
        return (f"{who} drops {'its' if mine else 'a'} reference on {e.root} "
                f"(root_count -> {e.count})")
    return f"{who} frees root {e.root}"


def narrative(res: Any) -> list[str]:
    """Numbered lines, oldest first; the last says what broke and where."""
    v = res.violation
    refs = ref_events(v.trace)
    ylds = yields(v.trace)
    events: list[tuple[int, int, Any]] = [(e.step, 0, e) for e in refs]
    events += [(y.step, 1, y) for y in ylds]
    events.sort(key=lambda t: (t[0], t[1]))
    held: dict[tuple[str, str], int] = {}
    freed_at: dict[str, int] = {}
    zero_at: dict[str, int] = {}
    lines: list[tuple[int, str]] = []
    for step, _order, ev in events:
        if isinstance(ev, RefEvent):
            text = _ref_line(ev, held)
            key = (ev.thread, ev.root)
            if ev.what in ("get", "new"):
                held[key] = held.get(key, 0) + 1
            elif ev.what == "put":
                held[key] = held.get(key, 0) - 1
                if ev.count == 0:
                    zero_at[ev.root] = step
            else:
                freed_at[ev.root] = step
            lines.append((step, text))
        else:
            assert isinstance(ev, Yield)
            mine = sorted(r for (t, r), n in held.items() if t == ev.thread and n > 0)
            holding = f" while holding its reference on {', '.join(mine)}" if mine else ""
            lines.append((step, f"{ev.thread} ({ev.function}) yields {ev.lock}{holding}"))
    for root, step in zero_at.items():
        if root not in freed_at or freed_at[root] < step:
            lines.append((step, f"nobody frees {root}: it stays on the roots list with "
                          f"root_count 0"))
    if v.root_cause is not None:
        rc = v.root_cause
        lines.append((rc.step, f"{rc.thread}: {rc.message}"))
    last = v.step if v.step is not None and v.step < len(v.trace) else len(v.trace) - 1
    where = f" in {v.function}" if v.function else ""
    who = v.thread or (v.trace[last].thread if v.trace else "?")
    after = [f"{root} was freed in step {step}" for root, step in freed_at.items()
             if step < last]
    lines.append((last, f"{who} then hits {kind_of(v)}{where}: {v.message}"
                  + (f" (after {', '.join(after)})" if after else "")))
    lines.sort(key=lambda t: t[0])
    return [f"{i}. {text} (step {step})" for i, (step, text) in enumerate(_fold(lines), 1)]


def _shape(text: str) -> str:
    return "".join(c for c in text if not c.isdigit())


def _fold(lines: list[tuple[int, str]], longest: int = 6) -> list[tuple[int, str]]:
    """A block of lines repeated back to back (differing only in numbers: a
    livelock's cycle) is told once, then how often it repeated."""
    shapes = [_shape(t) for _s, t in lines]
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        best_k, best_reps = 1, 1
        for k in range(1, longest + 1):
            reps = 1
            while shapes[i + reps * k:i + (reps + 1) * k] == shapes[i:i + k]:
                reps += 1
            if reps > 1 and reps * k > best_reps * best_k:
                best_k, best_reps = k, reps
        out.extend(lines[i:i + best_k])
        if best_reps > 1:
            end = lines[i + best_reps * best_k - 1][0]
            what = "the line above" if best_k == 1 else f"the {best_k} lines above"
            out.append((lines[i + best_k][0],
                        f"... {what} repeat {best_reps - 1} more times, to step {end}"))
        i += best_reps * best_k
    return out


def explain_text(res: Any, width: int = 100) -> str:
    import textwrap
    out = ["What happened:"]
    for line in narrative(res):
        out += textwrap.wrap(line, width, initial_indent="  ", subsequent_indent="     ",
                             break_long_words=False, break_on_hyphens=False)
    return "\n".join(out)
