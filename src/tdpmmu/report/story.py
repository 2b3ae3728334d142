"""What a trace says happened, in kernel terms, read from its steps' labels and notes.

Nothing here knows a scenario: lock holds come from the lock primitives' labels
(``spin_lock(NAME)``, ``read_lock(NAME)``, ``srcu_read_lock(NAME)``...), root
references from the model's notes (``FUNCTION: get r0 -> 2``, ``put``,
``free``, ``new root``), yields from ``cond_resched*`` notes.  The HTML page
draws these, ``--explain`` tells them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# label -> (lock kind, acquire?, mode).  Trylocks are left out: their label does not
# say whether they succeeded.
_LOCK_OPS = {
    "spin_lock": ("lock", True, "spin"), "spin_unlock": ("lock", False, "spin"),
    "read_lock": ("lock", True, "read"), "read_unlock": ("lock", False, "read"),
    "write_lock": ("lock", True, "write"), "write_unlock": ("lock", False, "write"),
    "mutex_lock": ("lock", True, "mutex"), "mutex_unlock": ("lock", False, "mutex"),
    "srcu_read_lock": ("srcu", True, "srcu"), "srcu_read_unlock": ("srcu", False, "srcu"),
}
_LABEL = re.compile(r"^(\w+)\(([^)]*)\)$")
_REF = re.compile(r"^(?:(\w+): )?(get|put) (\S+) -> (-?\d+)$")
_FREE = re.compile(r"^(?:(\w+): )?free (\S+)$")
_NEW = re.compile(r"^(?:(\w+): )?new root (\S+) .*count (\d+)$")
_YIELD = re.compile(r"^(cond_resched\w*): (.+) dropped$")


@dataclass(frozen=True)
class Hold:
    """``thread`` holds ``lock`` (in ``mode``) from step ``start`` to step ``end``,
    both included: taken in ``start``, released in ``end`` (``end`` is the last
    step when it is never released)."""

    thread: str
    lock: str
    mode: str  # spin | read | write | mutex | srcu | rcu
    start: int
    end: int
    released: bool


@dataclass(frozen=True)
class RefEvent:
    """A change to a root's reference count (or its creation or freeing)."""

    step: int
    thread: str
    function: str | None
    root: str
    what: str  # new | get | put | free
    count: int | None


@dataclass(frozen=True)
class Yield:
    step: int
    thread: str
    function: str
    lock: str


def lock_op(label: str) -> tuple[str, bool, str] | None:
    """(lock name, acquire?, mode) of a lock primitive's label, else None."""
    if label in ("rcu_read_lock", "rcu_read_unlock"):
        return ("RCU", label == "rcu_read_lock", "rcu")
    m = _LABEL.match(label)
    if m is None or m.group(1) not in _LOCK_OPS:
        return None
    _kind, acquire, mode = _LOCK_OPS[m.group(1)]
    return (m.group(2), acquire, mode)


def holds(trace: list[Any]) -> list[Hold]:
    """Every lock hold of the trace, in order of taking."""
    open_: dict[tuple[str, str], list[tuple[int, str]]] = {}
    out: list[Hold] = []
    for st in trace:
        op = lock_op(st.label)
        if op is None:
            continue
        lock, acquire, mode = op
        key = (st.thread, lock)
        if acquire:
            open_.setdefault(key, []).append((st.index, mode))
        elif open_.get(key):
            start, taken_mode = open_[key].pop()
            out.append(Hold(st.thread, lock, taken_mode, start, st.index, True))
    last = trace[-1].index if trace else 0
    for (thread, lock), stack in open_.items():
        for start, mode in stack:
            out.append(Hold(thread, lock, mode, start, last, False))
    out.sort(key=lambda h: (h.start, h.thread, h.lock))
    return out


def ref_events(trace: list[Any]) -> list[RefEvent]:
    out: list[RefEvent] = []
    for st in trace:
        for mark in st.marks:
            if m := _REF.match(mark):
                out.append(RefEvent(st.index, st.thread, m.group(1), m.group(3), m.group(2),
                                    int(m.group(4))))
            elif m := _FREE.match(mark):
                out.append(RefEvent(st.index, st.thread, m.group(1), m.group(2), "free", None))
            elif m := _NEW.match(mark):
                out.append(RefEvent(st.index, st.thread, m.group(1), m.group(2), "new",
                                    int(m.group(3))))
    return out


def yields(trace: list[Any]) -> list[Yield]:
    out = []
    for st in trace:
        for mark in st.marks:
            if m := _YIELD.match(mark):
                out.append(Yield(st.index, st.thread, _function(st) or m.group(1), m.group(2)))
    return out


def _function(st: Any) -> str | None:
    from .text import step_functions
    funcs = step_functions(st, depth=1)
    return funcs[0] if funcs else None


def root_counts(trace: list[Any]) -> dict[str, list[tuple[int, int | None, str]]]:
    """Per root, (step, root_count, state) after each step where either changed;
    state is ``listed``, ``unlisted`` (off tdp_mmu_roots) or ``freed``.  Read
    from the roots list the trace observed after each step."""
    out: dict[str, list[tuple[int, int | None, str]]] = {}
    seen: set[str] = set()
    for st in trace:
        if st.observed is None:
            continue
        now: dict[str, tuple[int | None, str]] = {}
        for name, _role, count, freed in st.observed:
            now[name] = (count, "freed" if freed else "listed")
        for name in seen - set(now):
            now[name] = (None, "unlisted")
        for name, (count, state) in now.items():
            seen.add(name)
            series = out.setdefault(name, [])
            if not series or series[-1][1:] != (count, state):
                series.append((st.index, count, state))
    return out
