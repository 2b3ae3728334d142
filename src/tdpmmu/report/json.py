"""The JSON form of a check's result (``--json``)."""

from __future__ import annotations

from typing import Any

from .kinds import kind_of, labels, property_of
from .text import replay_command, roots_text, step_functions


def to_json(res: Any) -> dict[str, Any]:
    r = res.result
    out: dict[str, Any] = {
        "kernel": res.kernel,
        "scenario": res.scenario,
        "strategy": res.strategy,
        "knobs": dict(res.knobs),
        "kasan": res.kasan,
        "executions": r.executions,
        "complete": r.complete,
        "cut_by": r.cut_by,
        "sleep_blocked": r.sleep_blocked,
        "elapsed_s": round(r.elapsed, 4),
        "violation": None,
    }
    v = res.violation
    if v is not None:
        rc = v.root_cause
        out["violation"] = {
            "kind": v.kind,
            "finding": kind_of(v),
            "property": property_of(v),
            "labels": labels(v),
            "message": v.message,
            "function": v.function,
            "thread": v.thread,
            "details": list(v.details),
            "schedule": v.schedule,
            "steps": v.steps,
            "preemptions": v.preemptions,
            "root_cause": None if rc is None else {
                "kind": rc.kind, "finding": kind_of(rc), "message": rc.message, "step": rc.step,
                "thread": rc.thread,
                "function": rc.function},
            "trace": [{"step": st.index, "thread": st.thread, "op": st.label,
                       "functions": step_functions(st, depth=64), "notes": list(st.marks),
                       "roots": roots_text(st.observed) if st.observed is not None else None}
                      for st in v.trace],
            "replay": replay_command(res),
        }
    return out
