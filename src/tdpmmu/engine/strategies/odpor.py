"""Optimal DPOR: source sets replaced by wakeup trees (Abdulla, Aronis, Jonsson,
Sagonas, JACM 2017).

Race detection is source-DPOR's (see :mod:`.dpor`): when event e' races with
an earlier event e, the reversal is the sequence v = notdep(e).e' (the events
after e that do not happen after it, then e').  Source-DPOR only adds one
initial of v to the backtrack set of the node where e ran and then explores
from there freely, which can end in executions whose every continuation is
asleep (sleep-set blocked).  Optimal DPOR keeps v itself: each node holds a
*wakeup tree*, an ordered tree of thread sequences still to explore from it,
and an execution that takes a branch of the tree follows that branch's
sequence before scheduling freely.

Inserting v into the tree of node E:

* nothing is inserted when a thread asleep at E (explored there before, or
  put to sleep above) is a *weak initial* of v: it can start an execution
  equivalent to v, so v's trace was or will be covered from it;
* otherwise the tree is descended from its root: at each level the first
  child whose thread is a weak initial of what is left of v is followed, that
  thread's first event is taken off v; reaching a leaf (or using v up) means
  an existing sequence already covers v; a level with no such child gets the
  rest of v as a new rightmost branch.

A thread q is a weak initial of a sequence w when q's first event in w has
no happens-before predecessor in w, or q has no event in w and q's next event
is independent of every event of w.  Events are compared by their declared
accesses (:func:`~tdpmmu.engine.access.dependent`) and, inside v, by the
vector clocks of the execution that found the race.

With plain loads, stores and locks every execution is then the first of its
Mazurkiewicz trace and none is sleep-set blocked.  With blocking operations
(waits, a disabled operation raced as if it ran) a sequence can reach a
thread that is disabled there: that branch is infeasible and dropped, and an
execution can still end sleep-blocked; ``Result.sleep_blocked`` counts them.

Data choices (``choose``): the wakeup subtree handed to the step after a
choice is copied for each value, and races found under one value insert into
the nodes above it as usual.
"""

from __future__ import annotations

from typing import Any

from ..access import CONFLICT, dependent
from .dpor import DporStrategy
from .tree import Node

_NEW = -1  # the key of an object a wakeup-tree node's prefix neither made nor touched


class _W:
    """A wakeup-tree node: a thread, the accesses of its next event there, the subtree.

    The accesses are kept as ``(key, mode)`` pairs, not objects: a tree outlives
    the execution that built it, and each execution has its own objects.  An
    object made before the tree's node (its creation serial,
    :func:`~tdpmmu.engine.runtime.new_serial`, is below ``nser``) is keyed by
    that serial; one the node's prefix touched, by the order of first touch
    (below ``lim``).  Every execution through the node keys those objects
    alike.  Any other object is ``_NEW``: two ``_NEW`` objects may be one, so
    they count as dependent, and a node built on such a guess is not ``sure``
    (see ``OptimalDporStrategy._insert``).
    """

    __slots__ = ("tid", "kacc", "lim", "nser", "kids", "sure", "ghost")

    def __init__(self, tid: int, kacc: tuple, lim: int, nser: int, kids: list[_W],
                 sure: bool = True, ghost: bool = False) -> None:
        self.tid = tid
        self.kacc = kacc
        self.lim = lim
        self.nser = nser
        self.kids = kids
        self.sure = sure
        # A branch explored elsewhere (a split search's other unit, see
        # tdpmmu.parallel.split): taken as explored, not run.
        self.ghost = ghost

    def __getstate__(self) -> tuple:
        return (self.tid, self.kacc, self.lim, self.nser, self.kids, self.sure, self.ghost)

    def __setstate__(self, st: tuple) -> None:
        self.tid, self.kacc, self.lim, self.nser, self.kids, self.sure, self.ghost = st

    def copy(self) -> _W:
        return _W(self.tid, self.kacc, self.lim, self.nser, [k.copy() for k in self.kids],
                  self.sure, self.ghost)


# An event of a sequence to insert: (thread, accesses, vector clock, own sequence number).
_Item = tuple[int, Any, list[int], int]


def _first_unordered(q: int, items: list[_Item]) -> bool | None:
    """None when ``q`` has no event in ``items``; else whether its first one has
    no happens-before predecessor among the events before it."""
    for i, (tid, _a, clock, _s) in enumerate(items):
        if tid == q:
            return all(clock[ptid] < pseq for ptid, _pa, _pc, pseq in items[:i])
    return None


def _weak_initial(q: int, acc: Any, items: list[_Item]) -> bool:
    """Is thread ``q``, whose next event has accesses ``acc`` (objects of this
    execution), a weak initial of ``items``?"""
    first = _first_unordered(q, items)
    if first is not None:
        return first
    if not acc:
        return True
    return all(not dependent(acc, a) for _tid, a, _c, _s in items)


def _without_first(items: list[_Item], q: int) -> list[_Item]:
    for i, it in enumerate(items):
        if it[0] == q:
            return items[:i] + items[i + 1:]
    return items


class OptimalDporStrategy(DporStrategy):
    """Optimal DPOR with wakeup trees; ``blocked_branches`` counts infeasible branches."""

    name = "dpor"
    EXECUTION_FIELDS = DporStrategy.EXECUTION_FIELDS | {"pending_wut", "guessed"}

    def __init__(self) -> None:
        self.pending_wut: list[_W] | None = None
        self.blocked_branches = 0
        self.guessed = False
        self._kaccs: dict[tuple, tuple] = {}  # interned keyed accesses (see _keyed)
        super().__init__()

    def _reset_execution(self) -> None:
        super()._reset_execution()
        self.pending_wut = None

    # ------------------------------------------------------------- the tree
    def begin(self) -> bool:
        if not self.started:
            self.started = True
            self.pos = 0
            self._reset_execution()
            return True
        nodes = self.nodes
        while nodes:
            node = nodes[-1]
            if node.kind == "c":
                if node.chosen + 1 < node.n:
                    node.chosen += 1
                    return self._restart_execution()
            else:
                node.done.add(node.chosen)
                node.cur = None
                w = self._next_branch(node)
                if w is not None:
                    node.cur = w
                    node.chosen = w.tid
                    return self._restart_execution()
            nodes.pop()
        self.complete = self.cut_by is None
        return False

    def _restart_execution(self) -> bool:
        more = self._restart()  # sets the branch the replay runs up to
        self._reset_execution()
        return more

    def _next_branch(self, node: Node) -> _W | None:
        """The leftmost branch of the node's wakeup tree whose thread can run there."""
        wut = node.wut
        while wut:
            w = wut.pop(0)
            if w.ghost:  # explored by another unit: asleep for the branches after it
                node.done.add(w.tid)
                continue
            if w.tid in node.enabled and w.tid not in node.done:
                return w
            self.blocked_branches += 1
        return None

    def new_step_node(self, ex: Any, enabled: list, node: Node) -> Any:
        node.sleep = self.pending_sleep
        pending = self.pending_wut
        self.pending_wut = None
        node.wut = self._hand_down(pending) if pending else []
        w = self._next_branch(node)
        if w is not None:
            for t in enabled:
                if t.tid == w.tid:
                    node.cur = w
                    return t
        t = self.prefer(enabled, ex.last, node.enabled - node.sleep - node.done)
        if t is not None:
            node.cur = _W(t.tid, (), 0, 0, [])
        return t

    def _hand_down(self, pending: list[_W]) -> list[_W]:
        """The wakeup tree of a new node: the subtree below the branch its
        parent took.  Moved when the parent is the step node right above (a
        branch's subtree is handed down once: a node is made once per branch
        of its parent, and replays only pass through it), copied after a data
        choice, whose every value starts a new node from the same subtree.
        Moving keeps one copy of each pending sequence alive instead of one
        per level it was handed through."""
        parent = self.nodes[-1] if self.nodes else None
        if parent is not None and parent.kind == "s" and parent.cur is not None \
                and parent.cur.kids is pending:
            parent.cur.kids = []
            return pending
        return [w.copy() for w in pending]

    def on_step(self, ex: Any, t: Any, node: Node, fresh: bool) -> None:
        super().on_step(ex, t, node, fresh)
        cur = node.cur
        self.pending_wut = cur.kids if cur is not None else None

    # ------------------------------------------------------------ reversals
    def _keyed(self, acc: Any, lim: int, nser: int) -> tuple:
        objs = self.objs
        out = []
        for obj, mode in acc:
            try:  # not getattr: a freed object's class may guard its attributes
                serial = object.__getattribute__(obj, "_serial")
            except AttributeError:
                serial = None
            if serial is not None and serial < nser:
                out.append((2 * serial, mode))
                continue
            st = objs.get(id(obj))
            out.append((2 * st.num + 1 if st is not None and st.num < lim else _NEW, mode))
        # One tuple per distinct keyed access list: the same events recur in
        # many pending sequences, and the wakeup trees are most of the memory.
        kacc = tuple(out)
        return self._kaccs.setdefault(kacc, kacc)

    def _tree_weak_initial(self, w: _W, items: list[_Item]) -> bool:
        """Is wakeup-tree node ``w``'s thread a weak initial of ``items``?  A "no"
        that rests on two ``_NEW`` objects sets ``self.guessed``."""
        first = _first_unordered(w.tid, items)
        if first is not None:
            return first
        kacc = w.kacc
        if not kacc:
            return True
        for _tid, a, _c, _s in items:
            if not a:
                continue
            for k2, m2 in self._keyed(a, w.lim, w.nser):
                for k, m in kacc:
                    if k == k2 and CONFLICT[m][m2]:
                        if k == _NEW:
                            self.guessed = True
                        return False
        return True

    def _reverse(self, ex: Any, e: int, tid: int, clock: list[int]) -> None:
        """Insert v = notdep(e).e' into the wakeup tree of the node where ``e`` ran."""
        node = self.nodes[self.ev_node[e]]
        items = self._reversal(ex, e, tid, clock)
        if not self._covered_asleep(node, items):
            self._insert(node, items)

    def _reversal(self, ex: Any, e: int, tid: int, clock: list[int]) -> list[_Item]:
        """The sequence v = notdep(e).e' for the race of event ``e`` with thread
        ``tid``'s event (own-thread past ``clock``)."""
        ev_tid, ev_seq, ev_clock, ev_acc = self.ev_tid, self.ev_seq, self.ev_clock, self.ev_acc
        et, es = ev_tid[e], ev_seq[e]
        items: list[_Item] = [(ev_tid[j], ev_acc[j], ev_clock[j], ev_seq[j])
                              for j in range(e + 1, len(ev_tid)) if ev_clock[j][et] < es]
        # e' comes after what it depends on inside v, not after e's successors
        # (its vector clock in the execution joins them: they raced with it).
        acc = ex.threads[tid].acc
        own = self.clocks.get(tid)
        mine = [0] * len(clock) if own is None else own[:]
        mine[tid] += 1
        for it_tid, it_acc, it_clock, _s in items:
            if it_tid == tid or dependent(it_acc, acc):
                for k, c in enumerate(it_clock):
                    if c > mine[k]:
                        mine[k] = c
        items.append((tid, acc, mine, mine[tid]))
        return items

    @staticmethod
    def _covered_asleep(node: Node, items: list[_Item]) -> bool:
        """Is a thread asleep at ``node`` (or explored there) a weak initial of v?"""
        sacc = node.sacc
        asleep = node.sleep | node.done
        return any(_weak_initial(q, sacc[q] if sacc else (), items) for q in asleep)

    def _insert(self, node: Node, items: list[_Item], guessed: bool = False) -> None:
        """Insert ``items`` into the node's wakeup tree (see the module docstring).

        A leaf covers v only if the tree was built without guesses: a leaf
        that is not ``sure`` is extended with the rest of v instead, so that v
        is explored, not assumed covered.
        """
        level = node.wut
        if level is None:
            level = node.wut = []
        top = True
        self.guessed = guessed  # a guess made on branches not in the tree (a split search)
        while True:
            for w in level:
                if self._tree_weak_initial(w, items):
                    rest = _without_first(items, w.tid)
                    if not rest:
                        return  # v is a weak prefix of an existing sequence
                    if not w.kids and w.sure:
                        return  # an existing sequence is a weak prefix of v
                    items = rest
                    level = w.kids
                    top = False
                    break
            else:
                if top and items[0][0] not in node.enabled:
                    return  # v starts with a thread disabled here: infeasible
                chain: list[_W] = level
                lim, nser, sure = node.nobj, node.nser, not self.guessed
                for it_tid, it_acc, _c, _s in items:
                    w = _W(it_tid, self._keyed(it_acc, lim, nser), lim, nser, [], sure)
                    chain.append(w)
                    chain = w.kids
                return
