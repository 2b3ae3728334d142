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

Updates (``UPDATE``, see :mod:`..access`) commute with each other: a read or
a write of an object races with every thread's last update since the last
write, an update with the last write and the reads since, never with another
update.

Locks: acquires race with acquires; a release only orders the next acquire
after it (the reverse order is impossible while the lock is held).  A plain
READ or WRITE of a lock object (an is-locked test, a trylock) conflicts with
every lock operation on it.  An enabling condition must depend only on the
objects its operation declares, so that a reversal that leaves the operation
disabled is known to be infeasible.

Blocking: an operation that is disabled is no event, so the races above never
see it, yet it may be able to run earlier, before what disabled it.  So the
announced operation of a disabled thread is raced against the execution as if
it ran, before every event it depends on and when the execution ends (a
deadlock, a sleep-blocked execution): without this, a thread that blocks for
good (B waits on a lock A holds while A waits forever) never gets its
alternative order tried.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from ..access import (
    ACQUIRE,
    ACQUIRE_SHARED,
    READ,
    RELEASE,
    RELEASE_SHARED,
    UPDATE,
    WRITE,
    dependent,
)
from ..runtime import serials_issued
from .tree import Node, TreeStrategy


class _ObjState:
    """Happens-before bookkeeping of one shared object in the current execution."""

    __slots__ = ("obj", "num", "last_w", "reads", "updates", "last_acq", "shared_acq",
                 "last_rel", "shared_rel", "locked")

    def __init__(self, obj: object, num: int) -> None:
        self.obj = obj  # keeps the object alive, so its id() is not reused meanwhile
        # Objects are numbered in the order events first touch them: executions
        # that share a prefix number the objects that prefix touches alike.
        self.num = num
        self.last_w = -1  # event index of the last write
        self.reads: dict[int, int] = {}  # tid -> last read event since last_w
        # tid -> last UPDATE since last_w: updates commute with each other, so
        # a read or write depends on every thread's, not only on the last one.
        self.updates: dict[int, int] = {}
        self.last_acq = -1  # last exclusive acquire
        self.shared_acq: dict[int, int] = {}  # tid -> shared acquire since last_acq
        self.last_rel = -1  # last exclusive release
        self.shared_rel: dict[int, int] = {}  # tid -> shared release since last_acq
        self.locked = False  # some lock operation was seen (READ/WRITE must look at them)


class DporStrategy(TreeStrategy):
    """Source-DPOR; :class:`~.odpor.OptimalDporStrategy` adds wakeup trees."""

    name = "source-dpor"
    EXECUTION_FIELDS = TreeStrategy.EXECUTION_FIELDS | {
        "ev_tid", "ev_seq", "ev_clock", "ev_node", "ev_acc", "keep", "nev", "clocks", "objs",
        "pending_sleep", "step_accs"}

    def __init__(self) -> None:
        super().__init__()
        self.pending_sleep: frozenset[int] = frozenset()
        # With snapshots on: per decision, every thread's announced accesses
        # (for the sleep sets' accesses of a resumed prefix, see resumed()).
        self.step_accs: dict[int, tuple] | None = None
        self._reset_execution()

    def resumed(self, ex: Any) -> None:
        # The events before the snapshot are this process's own and the
        # search's alike; later ones are rebuilt as the execution replays.
        n = self.nev
        del self.ev_tid[n:], self.ev_seq[n:], self.ev_clock[n:], self.ev_node[n:]
        del self.ev_acc[n:]
        self.keep = n
        accs = self.step_accs or {}
        nodes = self.nodes
        for i in range(min(self.pos, len(nodes))):
            node = nodes[i]
            if node.kind == "s":
                asleep = node.sleep | node.done
                if asleep:
                    acc = accs[i]
                    node.sacc = {q: acc[q] for q in asleep}

    def _reset_execution(self) -> None:
        # The next execution replays the decisions before ``self.branch``: the
        # events they make are the same as in this one, so their happens-before
        # records are kept and only the object states (objects are new in each
        # execution) are rebuilt when they replay (see on_step).
        keep = 0
        ev_node = getattr(self, "ev_node", None)
        if ev_node and self.started and self.branch > 0:
            keep = bisect_left(ev_node, self.branch)
            del self.ev_tid[keep:], self.ev_seq[keep:], self.ev_clock[keep:]
            del self.ev_node[keep:], self.ev_acc[keep:]
        else:
            self.ev_tid: list[int] = []
            self.ev_seq: list[int] = []
            self.ev_clock: list[list[int]] = []
            self.ev_node: list[int] = []
            self.ev_acc: list[Any] = []
        self.keep = keep
        self.nev = 0  # events of the current execution so far
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
        acc = t.acc
        if self.step_accs is not None:
            self.step_accs[self.pos - 1] = tuple([th.acc for th in threads])
        # Sleep set of the next node: what slept here or was explored here
        # before, and commutes with the step now taken.  Before the branch
        # point the next step node exists (when the branch is a step node) and
        # keeps its own sleep set: only the accesses are recorded there.
        sleep, done = node.sleep, node.done
        if sleep or done:
            asleep = sleep | done if sleep and done else sleep or done
            node.sacc = {q: threads[q].acc for q in asleep}
            if fresh or self.nodes[self.branch].kind != "s":
                self.pending_sleep = frozenset(
                    q for q in asleep
                    if q != t.tid and not dependent(threads[q].acc, acc))
        elif self.pending_sleep:
            self.pending_sleep = frozenset()

        tid = t.tid
        index = self.nev
        self.nev = index + 1
        if index < self.keep:  # a replayed event: its clock is known
            self.clocks[tid] = self.ev_clock[index]
            self.ev_acc[index] = acc
            if acc:
                self._update(tid, acc, index)
            return
        nthreads = len(threads)
        node.nobj = len(self.objs)
        node.nser = serials_issued()
        clock = self.clocks.get(tid)
        clock = [0] * nthreads if clock is None else clock[:]
        seq = clock[tid] + 1
        clock[tid] = seq
        if acc:
            # A disabled operation is no event, but it could have run earlier;
            # race it before each event it depends on changes what it races
            # with (the last dependent event, as Flanagan-Godefroid DPOR does
            # for every next operation), and at the end (see end()).
            if fresh and len(node.enabled) < nthreads:
                for q in threads:
                    if q.tid not in node.enabled and not q.finished and q.acc \
                            and dependent(q.acc, acc):
                        self._race_pending(ex, q)
            candidates, joins = self._dependencies(acc)
            races = self._races(tid, clock, candidates) if fresh and candidates else None
            self._join(clock, joins)
            for e in self._maximal(races) if races else ():
                self._reverse(ex, e, tid, clock)
            self._update(tid, acc, index)
        self._record(tid, seq, clock, index, acc)

    def end(self, ex: Any) -> None:
        """Race the operations that never ran against the execution.

        A thread still unfinished when an execution ends (a deadlock, a
        sleep-blocked execution, a stop on a finding) has announced an
        operation that never became an event, so :meth:`on_step` never raced
        it; yet running it earlier may be possible and lead elsewhere (thread
        B takes a lock before A takes it and blocks forever holding it).
        Each such operation is raced as if it ran next.
        """
        for t in ex.threads:
            if not t.finished and t.acc:
                self._race_pending(ex, t)

    def _race_pending(self, ex: Any, t: Any) -> None:
        """Race thread ``t``'s announced operation as if it ran now."""
        clock = self.clocks.get(t.tid)
        clock = [0] * len(ex.threads) if clock is None else clock[:]
        clock[t.tid] += 1
        candidates, joins = self._dependencies(t.acc)
        races = self._races(t.tid, clock, candidates)
        self._join(clock, joins)
        for e in self._maximal(races):
            self._reverse(ex, e, t.tid, clock)

    def _dependencies(self, acc: Any) -> tuple[list[int], list[int]]:
        """Earlier events an operation with accesses ``acc`` may race with
        (``candidates``) and those it is ordered after (``joins``).

        Only reads the object states: every access of one operation is
        compared with the events before it, not with the operation's own
        accesses of the same object.
        """
        candidates: list[int] = []
        joins: list[int] = []
        objs = self.objs
        for obj, mode in acc:
            st = objs.get(id(obj))
            if st is None:
                continue
            if mode == READ:
                if st.last_w >= 0:
                    candidates.append(st.last_w)
                    joins.append(st.last_w)
                if st.updates:
                    updates = st.updates.values()
                    candidates.extend(updates)
                    joins.extend(updates)
                if st.locked:
                    self._lock_frontier(st, candidates, joins)
            elif mode in (WRITE, UPDATE):
                if st.last_w >= 0:
                    candidates.append(st.last_w)
                    joins.append(st.last_w)
                reads = st.reads.values()
                candidates.extend(reads)
                joins.extend(reads)
                if mode == WRITE and st.updates:
                    updates = st.updates.values()
                    candidates.extend(updates)
                    joins.extend(updates)
                if st.locked:
                    self._lock_frontier(st, candidates, joins)
            else:
                if mode == ACQUIRE:
                    if st.last_acq >= 0:
                        candidates.append(st.last_acq)
                    candidates.extend(st.shared_acq.values())
                    if st.last_rel >= 0:
                        joins.append(st.last_rel)
                    joins.extend(st.shared_rel.values())
                elif mode == ACQUIRE_SHARED:
                    if st.last_acq >= 0:
                        candidates.append(st.last_acq)
                    if st.last_rel >= 0:
                        joins.append(st.last_rel)
                # Plain accesses of the lock word (a trylock's WRITE, an
                # is-locked READ) conflict with every lock operation.
                if st.last_w >= 0:
                    candidates.append(st.last_w)
                    joins.append(st.last_w)
                if st.reads:
                    reads = st.reads.values()
                    candidates.extend(reads)
                    joins.extend(reads)
                if st.updates:
                    updates = st.updates.values()
                    candidates.extend(updates)
                    joins.extend(updates)
        return candidates, joins

    @staticmethod
    def _lock_frontier(st: _ObjState, candidates: list[int], joins: list[int]) -> None:
        """Add the lock operations on ``st`` a plain READ or WRITE of the lock word
        depends on: the last exclusive acquire and release, and the shared ones
        since (every earlier lock operation happens before one of these)."""
        for e in (st.last_acq, st.last_rel):
            if e >= 0:
                candidates.append(e)
                joins.append(e)
        for d in (st.shared_acq, st.shared_rel):
            if d:
                candidates.extend(d.values())
                joins.extend(d.values())

    def _update(self, tid: int, acc: Any, index: int) -> None:
        """Record event ``index`` of thread ``tid`` in the states of the objects it touched."""
        objs = self.objs
        for obj, mode in acc:
            key = id(obj)
            st = objs.get(key)
            if st is None:
                st = objs[key] = _ObjState(obj, len(objs))
            if mode == READ:
                st.reads[tid] = index
            elif mode == WRITE:
                st.last_w = index
                st.reads = {}
                if st.updates:
                    st.updates = {}
            elif mode == UPDATE:
                st.updates[tid] = index
            else:
                st.locked = True
                if mode == ACQUIRE:
                    st.last_acq = index
                    st.shared_acq = {}
                    st.shared_rel = {}
                elif mode == ACQUIRE_SHARED:
                    st.shared_acq[tid] = index
                elif mode == RELEASE:
                    st.last_rel = index
                elif mode == RELEASE_SHARED:
                    st.shared_rel[tid] = index

    def _races(self, tid: int, clock: list[int], candidates: list[int]) -> list[int]:
        """The candidates that race with an event of ``tid`` whose own-thread past
        is ``clock``: events of another thread not already ordered before it."""
        ev_tid, ev_seq = self.ev_tid, self.ev_seq
        return [e for e in set(candidates) if ev_tid[e] != tid and clock[ev_tid[e]] < ev_seq[e]]

    def _maximal(self, races: list[int]) -> list[int]:
        """The races not happening before another one (a race with e is implied
        when e happens before another racing event)."""
        if len(races) < 2:
            return races
        ev_tid, ev_seq, ev_clock = self.ev_tid, self.ev_seq, self.ev_clock
        return [e for e in races
                if not any(o != e and ev_clock[o][ev_tid[e]] >= ev_seq[e] for o in races)]

    def _join(self, clock: list[int], joins: list[int]) -> None:
        ev_clock = self.ev_clock
        for j in joins:
            cj = ev_clock[j]
            for i, c in enumerate(cj):
                if c > clock[i]:
                    clock[i] = c

    def _record(self, tid: int, seq: int, clock: list[int], index: int, acc: Any) -> None:
        self.clocks[tid] = clock
        self.ev_acc.append(acc)
        self.ev_tid.append(tid)
        self.ev_seq.append(seq)
        self.ev_clock.append(clock)
        self.ev_node.append(self.pos - 1)

    def _initials(self, e: int, tid: int, clock: list[int]) -> list[int]:
        """The threads that can start ``u = notdep(e) . e'``: the later events
        not happening after event ``e``, then thread ``tid``'s racing event
        (whose vector clock is ``clock``)."""
        et, es = self.ev_tid[e], self.ev_seq[e]
        ev_tid, ev_seq, ev_clock = self.ev_tid, self.ev_seq, self.ev_clock
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
        return initials

    def _reverse(self, ex: Any, e: int, tid: int, clock: list[int]) -> None:
        """Make sure the node where event ``e`` ran will also try the other order."""
        node = self.nodes[self.ev_node[e]]
        initials = self._initials(e, tid, clock)
        if any(q in node.backtrack for q in initials):
            return
        usable = [q for q in initials if q in node.enabled]
        if not usable:
            return  # the reversal leaves every initial disabled: infeasible
        awake = [q for q in usable if q not in node.sleep]
        node.backtrack.add(min(awake or usable))
