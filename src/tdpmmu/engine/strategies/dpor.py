"""Source-DPOR with sleep sets (Abdulla, Aronis, Jonsson, Sagonas; POPL 2014).

Every step is an *event* with a vector clock for happens-before, the order
that program order and dependent visible operations impose.  When an event e'
of thread p runs, each earlier event e that races with it (dependent, of
another thread, not already ordered before p, and maximal among such events)
is a place where the opposite order must be tried: with u the events after e
that do not happen after it, followed by e', some *initial* of u (a thread
whose first event in u has no happens-before predecessor in u) must be in the
backtrack set of the node where e ran; if none is, one is added.  Sleep sets
then skip an alternative whose next event commutes with everything run since it
was explored.

Locks: acquires race with acquires; a release only orders the next acquire
after it (the reverse order is impossible while the lock is held).  An enabling
condition must depend only on the objects its operation declares, so that a
reversal that leaves the operation disabled is known to be infeasible.
"""

from __future__ import annotations

from typing import Any

from ..access import ACQUIRE, ACQUIRE_SHARED, READ, RELEASE, RELEASE_SHARED, WRITE, dependent
from .tree import Node, TreeStrategy


class _ObjState:
    """Happens-before bookkeeping of one shared object in the current execution."""

    __slots__ = ("obj", "last_w", "reads", "last_acq", "shared_acq", "last_rel", "shared_rel")

    def __init__(self, obj: object) -> None:
        self.obj = obj  # keeps the object alive, so its id() is not reused meanwhile
        self.last_w = -1  # event index of the last write
        self.reads: dict[int, int] = {}  # tid -> last read event since last_w
        self.last_acq = -1  # last exclusive acquire
        self.shared_acq: dict[int, int] = {}  # tid -> shared acquire since last_acq
        self.last_rel = -1  # last exclusive release
        self.shared_rel: dict[int, int] = {}  # tid -> shared release since last_acq


class DporStrategy(TreeStrategy):
    name = "dpor"

    def __init__(self) -> None:
        super().__init__()
        self.pending_sleep: frozenset[int] = frozenset()
        self._reset_execution()

    def _reset_execution(self) -> None:
        self.ev_tid: list[int] = []
        self.ev_seq: list[int] = []
        self.ev_clock: list[list[int]] = []
        self.ev_node: list[int] = []
        self.clocks: dict[int, list[int]] = {}
        self.objs: dict[int, _ObjState] = {}
        self.pending_sleep = frozenset()

    def begin(self) -> bool:
        more = super().begin()
        self._reset_execution()
        return more

    def alternatives(self, node: Node) -> list[int]:
        return sorted(node.backtrack - node.done - node.sleep)

    def new_step_node(self, ex: Any, enabled: list, node: Node) -> Any:
        node.sleep = self.pending_sleep
        t = self.prefer(enabled, ex.last, node.enabled - node.sleep)
        if t is not None:
            node.backtrack = {t.tid}
        return t

    # ------------------------------------------------------------------ steps
    def on_step(self, ex: Any, t: Any, node: Node, fresh: bool) -> None:
        threads = ex.threads
        nthreads = len(threads)
        acc = t.acc
        # Sleep set of the next node: what slept here or was explored here
        # before, and commutes with the step now taken.
        asleep = node.sleep | node.done
        if asleep:
            self.pending_sleep = frozenset(
                q for q in asleep
                if q != t.tid and not dependent(threads[q].acc, acc))
        elif self.pending_sleep:
            self.pending_sleep = frozenset()

        tid = t.tid
        clock = self.clocks.get(tid)
        clock = [0] * nthreads if clock is None else clock[:]
        seq = clock[tid] + 1
        clock[tid] = seq
        index = len(self.ev_tid)
        if not acc:
            self._record(tid, seq, clock, index)
            return
        ev_clock = self.ev_clock
        candidates: list[int] = []
        joins: list[int] = []
        objs = self.objs
        for obj, mode in acc:
            key = id(obj)
            st = objs.get(key)
            if st is None:
                st = objs[key] = _ObjState(obj)
            if mode == READ:
                if st.last_w >= 0:
                    candidates.append(st.last_w)
                    joins.append(st.last_w)
                st.reads[tid] = index
            elif mode == WRITE:
                if st.last_w >= 0:
                    candidates.append(st.last_w)
                    joins.append(st.last_w)
                for r in st.reads.values():
                    candidates.append(r)
                    joins.append(r)
                st.last_w = index
                st.reads = {}
            elif mode == ACQUIRE:
                if st.last_acq >= 0:
                    candidates.append(st.last_acq)
                candidates.extend(st.shared_acq.values())
                if st.last_rel >= 0:
                    joins.append(st.last_rel)
                joins.extend(st.shared_rel.values())
                st.last_acq = index
                st.shared_acq = {}
                st.shared_rel = {}
            elif mode == ACQUIRE_SHARED:
                if st.last_acq >= 0:
                    candidates.append(st.last_acq)
                if st.last_rel >= 0:
                    joins.append(st.last_rel)
                st.shared_acq[tid] = index
            elif mode == RELEASE:
                st.last_rel = index
            elif mode == RELEASE_SHARED:
                st.shared_rel[tid] = index
        # Candidates not already ordered before this thread's previous events.
        ev_tid, ev_seq = self.ev_tid, self.ev_seq
        races = [e for e in set(candidates)
                 if ev_tid[e] != tid and clock[ev_tid[e]] < ev_seq[e]]
        for j in joins:
            cj = ev_clock[j]
            for i in range(nthreads):
                if cj[i] > clock[i]:
                    clock[i] = cj[i]
        if fresh and races:
            if len(races) > 1:
                # Keep the maximal ones: a race with e is implied when e happens
                # before another racing event.
                races = [e for e in races
                         if not any(o != e and ev_clock[o][ev_tid[e]] >= ev_seq[e]
                                    for o in races)]
            for e in races:
                self._reverse(ex, e, tid, clock)
        self._record(tid, seq, clock, index)

    def _record(self, tid: int, seq: int, clock: list[int], index: int) -> None:
        self.clocks[tid] = clock
        self.ev_tid.append(tid)
        self.ev_seq.append(seq)
        self.ev_clock.append(clock)
        self.ev_node.append(self.pos - 1)

    def _reverse(self, ex: Any, e: int, tid: int, clock: list[int]) -> None:
        """Make sure the node where event ``e`` ran will also try the other order."""
        node = self.nodes[self.ev_node[e]]
        et, es = self.ev_tid[e], self.ev_seq[e]
        ev_tid, ev_seq, ev_clock = self.ev_tid, self.ev_seq, self.ev_clock
        # u = notdep(e) . e' : the later events not happening after e, then e'.
        first: dict[int, int] = {}  # thread -> index of its first event in u (-1: e')
        for j in range(e + 1, len(ev_tid)):
            if ev_clock[j][et] < es:
                first.setdefault(ev_tid[j], j)
        first.setdefault(tid, -1)
        initials = []
        for q, j in first.items():
            cq = clock if j < 0 else ev_clock[j]
            if all(cq[s] < ev_seq[k] for s, k in first.items() if s != q and k >= 0):
                initials.append(q)
        if any(q in node.backtrack for q in initials):
            return
        usable = [q for q in initials if q in node.enabled]
        if not usable:
            return  # the reversal leaves every initial disabled: infeasible
        awake = [q for q in usable if q not in node.sleep]
        node.backtrack.add(min(awake or usable))
