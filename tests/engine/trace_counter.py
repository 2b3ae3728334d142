"""A brute-force Mazurkiewicz trace counter, independent of the engine's DPOR.

The counter enumerates the program's interleavings depth-first, keeping only
those in *lexicographic normal form* (Anisimov and Knuth): a sequence is in
that form when no factor ``b u a`` has ``a``'s thread numbered below ``b``'s
and ``a`` independent of every event of ``b u``.  Every trace has exactly one
such sequence and every prefix of one is one too, so extending only prefixes
in that form visits each trace's sequence once (plus dead ends, prefixes no
complete sequence in normal form extends, which are not counted).  As a cross
check each complete sequence's Foata normal form is kept, and they must all
differ.  Independence is this module's own relation:

  two events are *dependent* when they belong to one thread, or touch one
  object and at least one of the two accesses is not a plain read (a write, or
  any lock operation: acquire, release, shared or not), unless both are
  commuting updates (adds to one counter: either order gives one state).

That is coarser than the engine's relation (which lets a release commute with
a shared release, or two shared acquires with each other), so on programs with
shared locks it counts at least as many traces as an optimal search needs; on
programs of plain loads, stores and exclusive locks the two relations agree.
An event is identified by its thread, its index in that thread, its label and
its accesses (objects by name), so two traces whose threads read different
values and so take different paths are different traces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tdpmmu.engine import READ, UPDATE, explore
from tdpmmu.engine.strategies import DfsStrategy


class _Normal(DfsStrategy):
    """DFS over the interleavings in lexicographic normal form."""

    def __init__(self, names: Callable[[Any], str]) -> None:
        super().__init__()
        self.names = names
        self.events: list[tuple] = []
        self.forms: set[tuple] = set()
        self.maximal = 0

    def begin(self) -> bool:
        self.events = []
        return super().begin()

    def _event(self, t: Any) -> tuple:
        return (t.tid, t.label, tuple(sorted((self.names(o), m) for o, m in t.acc)))

    def _normal(self, a: tuple) -> bool:
        """Does appending event ``a`` keep the sequence in lexicographic normal form?"""
        for b in reversed(self.events):
            if _dependent(b, a):
                return True
            if b[0] > a[0]:
                return False
        return True

    def new_step_node(self, ex: Any, enabled: list, node: Any) -> Any:
        ok = [t for t in enabled if self._normal(self._event(t))]
        node.backtrack = {t.tid for t in ok}
        return ok[0] if ok else None  # None: a dead end, not counted

    def on_step(self, ex: Any, t: Any, node: Any, fresh: bool) -> None:
        self.events.append(self._event(t))

    def end(self, ex: Any) -> None:
        if ex.sleep_blocked or ex.finding is not None:
            return
        self.maximal += 1
        self.forms.add(foata(self.events))


def _dependent(a: tuple, b: tuple) -> bool:
    if a[0] == b[0]:
        return True
    for oa, ma in a[2]:
        for ob, mb in b[2]:
            if oa == ob and not (ma == READ and mb == READ) \
                    and not (ma == UPDATE and mb == UPDATE):
                return True
    return False


def foata(events: list[tuple]) -> tuple:
    """The Foata normal form: events by level (1 + the highest level of an earlier
    dependent event), each level as a sorted tuple of (thread, index, label, accesses)."""
    levels: list[int] = []
    count: dict[int, int] = {}
    named = []
    for i, ev in enumerate(events):
        lvl = 0
        for j in range(i):
            if levels[j] >= lvl and _dependent(events[j], ev):
                lvl = levels[j] + 1
        levels.append(lvl)
        k = count.get(ev[0], 0)
        count[ev[0]] = k + 1
        named.append((lvl, (ev[0], k, ev[1], ev[2])))
    out: dict[int, list] = {}
    for lvl, e in named:
        out.setdefault(lvl, []).append(e)
    return tuple(tuple(sorted(out[lvl])) for lvl in sorted(out))


def count_traces(setup: Callable[[], Any], threads: list, max_executions: int = 200_000,
                 names: Callable[[Any], str] | None = None,
                 snapshot: Callable[[Any], Any] | None = None) -> tuple[int, set]:
    """The number of Mazurkiewicz traces of the program's complete executions, and
    the set of their final states (``snapshot`` of the state; empty without it).

    Objects are told apart by ``names`` (default: their ``name`` attribute), so
    two objects of one program must not share a name.
    """
    namer = names or (lambda o: getattr(o, "name", None) or type(o).__name__)
    strat = _Normal(namer)
    finals: set = set()

    def check(state: Any) -> None:
        if snapshot is not None:
            finals.add(snapshot(state))

    r = explore(setup, threads, strategy=strat, max_executions=max_executions, minimize=False,
                check=check)
    if not r.complete:
        raise AssertionError(f"trace counter: the program is too big ({r.cut_by})")
    if r.violation is not None:
        raise AssertionError(f"trace counter: the program fails: {r.violation.message}")
    if len(strat.forms) != strat.maximal:
        raise AssertionError("trace counter: two sequences in normal form share a trace")
    return strat.maximal, finals
