"""One tree search (dfs, dpor or source-dpor) split into subtrees that workers explore.

A *unit* is the subtree below a prefix of decisions: the nodes of the prefix
(each with the choice taken and the alternatives explored before it, as the
serial search would have them) and the alternative to take at its last node.
A worker explores it depth-first, exactly as the serial strategy would, and
never advances a node of the prefix.  What it learns about the prefix (DPOR
races that add backtrack points or wakeup-tree branches above the unit's
root) goes back to the coordinator, which owns the prefix nodes and hands
their new alternatives out as further units.

A unit that runs more than ``budget`` executions stops between two executions
and hands its whole stack back: every node on it becomes the coordinator's,
and each node's pending alternatives become units.  The split is so adaptive:
big subtrees are cut up, small ones run in one go.  Each execution belongs to
exactly one unit, so the executions add up to what one search runs.

Optimal DPOR (``dpor``): a unit's root alternative is a branch of its node's
wakeup tree, sent with the unit (the prefix nodes carry only the branch they
follow); the coordinator takes a node's branches one at a time, when a
worker is free, so a reversal that arrives meanwhile still extends the
branches not handed out, as in the serial search.  A reversal found in a
unit that lands above its root comes back as plain data (the sequence, its
vector clocks, its accesses keyed as wakeup trees key them, and the
accesses of every thread at that node), and the coordinator inserts it as the
serial search would have when it found it: the node's branches handed out
before the unit's count as explored (asleep), those handed out after it do
not.  When the sequence falls into one of the latter, whose unit is already
out, a *late unit* explores the extension: that branch again, following its
wakeup tree down to the extension, the branches left of that path as
*ghosts* (taken as explored, asleep as in the serial search), then the
extension.  Reversals the serial search would have met in another order may
so cost an execution the serial search does not run (a late unit's free
exploration below the extension); none is dropped.

Results are merged in the order the units were handed out, so a split run is
deterministic.  A unit's executions differ from ``-j 1`` only where the order
siblings are explored in (which a sleep set depends on) differs, or a worker
did not yet know what another had found (then DPOR may explore a second
equivalent order).

Each unit's first execution replays its prefix from ``setup()``, as every
execution of the serial search does.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import engine
from ..engine.access import CONFLICT
from ..engine.strategies import DfsStrategy, DporStrategy, OptimalDporStrategy
from ..engine.strategies.odpor import _NEW, _W, _first_unordered, _without_first
from ..engine.strategies.tree import Node, TreeStrategy
from .backend import Backend

SPLIT_BUDGET = 64  # executions of a unit before it hands its stack back
STRATEGY_CLASSES: dict[str, type[TreeStrategy]] = {"dfs": DfsStrategy,
                                                   "source-dpor": DporStrategy,
                                                   "dpor": OptimalDporStrategy}
LOOKAHEAD = 2  # units queued per worker beyond the one it runs (results merge in order)

# --------------------------------------------------------------- programs


@dataclass
class Program:
    """What :func:`tdpmmu.engine.explore` runs, built inside a worker."""

    setup: Callable[[], Any]
    threads: list
    check: Callable[[Any], Any] | None = None
    invariant: Callable[[Any], None] | None = None
    observe: Callable[[Any], Any] | None = None
    max_steps: int = 10_000
    # Final states seen since the last call (for tests comparing state sets).
    finals: Callable[[], set] | None = None
    stop: Callable[[], str | None] | None = None


@dataclass(frozen=True)
class ProgramRef:
    """A module-level factory (``"package.module:function"``) and its arguments."""

    factory: str
    args: tuple = ()

    def load(self) -> Program:
        prog = _PROGRAMS.get(self)
        if prog is None:
            module, _, name = self.factory.partition(":")
            prog = _PROGRAMS[self] = getattr(importlib.import_module(module), name)(*self.args)
        return prog


_PROGRAMS: dict[ProgramRef, Program] = {}  # per process: a model is built once per worker

# ------------------------------------------------------------ node wire format


def encode_node(node: Node, chosen: int | None = None, done: set[int] | None = None,
                cur: Any = None, prefix: bool = False) -> list:
    """A node as JSON data; an optimal-DPOR node also carries its wakeup tree
    (the branches left and the one being explored) and its object counts.

    ``cur``: the wakeup-tree branch to follow there instead of the node's own.
    ``prefix``: the node is in a unit's prefix, where the worker never takes a
    branch of its tree (the coordinator does): the branches left are not sent.
    """
    out = [node.kind, node.chosen if chosen is None else chosen, sorted(node.enabled),
           sorted(node.backtrack), sorted(node.done if done is None else done),
           sorted(node.sleep), node.n]
    cur = node.cur if cur is None else cur
    if node.wut is not None or cur is not None:
        out.append({"wut": [] if prefix else [_encode_w(w) for w in node.wut or ()],
                    "cur": None if cur is None else _encode_w(cur),
                    "nobj": node.nobj, "nser": node.nser})
    return out


def decode_node(data: list) -> Node:
    kind, chosen, enabled, backtrack, done, sleep, n, *extra = data
    node = Node(kind)
    node.chosen = chosen
    node.enabled = frozenset(enabled)
    node.backtrack = set(backtrack)
    node.done = set(done)
    node.sleep = frozenset(sleep)
    node.n = n
    if extra:
        (wake,) = extra
        node.wut = [_decode_w(w) for w in wake["wut"]]
        node.cur = None if wake["cur"] is None else _decode_w(wake["cur"])
        node.nobj, node.nser = int(wake["nobj"]), int(wake["nser"])
    return node


def _encode_w(w: Any) -> list:
    """A wakeup-tree node (``odpor._W``): thread, keyed accesses, keys' bounds,
    sure, children."""
    out = [w.tid, [list(a) for a in w.kacc], w.lim, w.nser, w.sure,
           [_encode_w(k) for k in w.kids]]
    if w.ghost:
        out.append(True)
    return out


def _decode_w(data: list) -> Any:
    tid, kacc, lim, nser, sure, kids, *ghost = data
    return _W(int(tid), tuple((int(k), int(m)) for k, m in kacc), int(lim), int(nser),
              [_decode_w(k) for k in kids], bool(sure), bool(ghost and ghost[0]))


# ------------------------------------------------------------------ workers


@dataclass
class SubtreeTask:
    program: ProgramRef
    strategy: str
    path: list  # encoded prefix nodes; the last one's chosen is the unit's root
    budget: int = SPLIT_BUDGET


@dataclass
class SubtreeResult:
    result: engine.Result
    additions: list[list[int]]  # backtrack points added to each prefix node
    reversals: list = field(default_factory=list)  # (prefix index, initials), in order
    stack: list = field(default_factory=list)  # encoded nodes below the prefix, if split
    finals: set | None = None


_UNIT_CLASSES: dict[type[TreeStrategy], type[TreeStrategy]] = {}


def unit_strategy(base: type[TreeStrategy], prefix: list[Node]) -> TreeStrategy:
    """A ``base`` search of the subtree below ``prefix`` (its last node's choice)."""
    cls = _UNIT_CLASSES.get(base)
    if cls is None:
        methods: dict[str, Any] = {"begin": _unit_begin, "_restart": _unit_restart}
        if issubclass(base, OptimalDporStrategy):
            methods["_reverse"] = _unit_insert
            methods["on_step"] = _unit_on_step(base.on_step)
        elif hasattr(base, "_reverse"):
            methods["_reverse"] = _unit_reverse
        cls = _UNIT_CLASSES[base] = type(f"Unit{base.__name__}", (base,), methods)
    strat = cls()
    strat.floor = len(prefix)  # type: ignore[attr-defined]
    strat.nodes = list(prefix)
    strat.first = bool(prefix)  # type: ignore[attr-defined]
    strat.deferred = []  # type: ignore[attr-defined]
    strat.prefix_accs = {}  # type: ignore[attr-defined]
    return strat


def _unit_reverse(self: Any, ex: Any, e: int, tid: int, clock: list[int]) -> None:
    """DPOR's reversal, deferred to the coordinator when it lands in the prefix.

    The coordinator knows the backtrack points every unit added to a prefix
    node; deciding there whether one of the reversal's initials is already in
    the backtrack set keeps two units from adding two different initials for
    what is one race in the serial search.
    """
    index = self.ev_node[e]
    if index >= self.floor:
        type(self).__mro__[1]._reverse(self, ex, e, tid, clock)
        return
    initials = self._initials(e, tid, clock)
    self.deferred.append((index, sorted(initials)))


def add_reversal(node: Node, initials: list[int]) -> bool:
    """DPOR's choice for one race at ``node`` (see DporStrategy._reverse)."""
    if any(q in node.backtrack for q in initials):
        return False
    usable = [q for q in initials if q in node.enabled]
    if not usable:
        return False
    awake = [q for q in usable if q not in node.sleep]
    node.backtrack.add(min(awake or usable))
    return True


def _unit_on_step(base_on_step: Callable[..., None]) -> Callable[..., None]:
    def on_step(self: Any, ex: Any, t: Any, node: Node, fresh: bool) -> None:
        """Optimal DPOR's step; at a prefix node, every thread's next accesses
        are kept (the coordinator's sleep test of a reversal sent there needs them)."""
        if self.pos <= self.floor:
            self.prefix_accs[self.pos - 1] = [th.acc for th in ex.threads]
        base_on_step(self, ex, t, node, fresh)
    return on_step


def _unit_insert(self: Any, ex: Any, e: int, tid: int, clock: list[int]) -> None:
    """Optimal DPOR's insertion, sent to the coordinator when it lands in the prefix.

    The sequence v goes as plain data (:func:`_portable`) with the accesses of
    every thread at that node: the coordinator owns the node's wakeup tree,
    and tests v against the threads explored there by any unit, not only
    those this worker knows of.  A v this worker already finds covered by a
    thread asleep there is dropped here (the coordinator's asleep threads
    include them).
    """
    index = self.ev_node[e]
    if index >= self.floor:
        type(self).__mro__[1]._reverse(self, ex, e, tid, clock)
        return
    items = self._reversal(ex, e, tid, clock)
    if self._covered_asleep(self.nodes[index], items):
        return
    self.deferred.append((index, *_portable(self, items, self.prefix_accs.get(index, []))))


def _portable(strat: Any, items: list, accs: list) -> tuple[list, list]:
    """A reversal as plain data: each access is (object, serial, number, mode).

    ``object`` numbers the objects within this message (two accesses of one
    object, one number); ``serial`` is its creation serial and ``number`` the
    order events first touched it in this execution (-1: none), from which the
    coordinator keys it for any wakeup-tree node, as
    ``OptimalDporStrategy._keyed`` does.
    """
    local: dict[int, int] = {}
    objs = strat.objs

    def conv(acc: Any) -> list:
        out = []
        for obj, mode in acc or ():
            try:  # not getattr: a freed object's class may guard its attributes
                serial = object.__getattribute__(obj, "_serial")
            except AttributeError:
                serial = None
            st = objs.get(id(obj))
            out.append((local.setdefault(id(obj), len(local)),
                        -1 if serial is None else serial, -1 if st is None else st.num, mode))
        return out

    return ([(t, conv(a), list(c), s) for t, a, c, s in items], [conv(a) for a in accs])


def _unit_restart(self: Any) -> bool:
    # The unit's nodes below its prefix are searched on their own (see
    # _unit_begin): the branch point counts the prefix, before the strategy
    # keeps the events of the decisions above it.
    self.branch = len(self.nodes) - 1 + self.floor
    self.pos = 0
    return True


def _unit_begin(self: Any) -> bool:
    base = type(self).__mro__[1]
    floor = self.floor
    if self.first:  # the unit's root alternative, with the prefix replayed
        self.first = False
        self.started = True
        self.pos = 0
        self.branch = floor - 1
        reset = getattr(self, "_reset_execution", None)
        if reset is not None:
            reset()
        return True
    prefix = self.nodes[:floor]
    self.nodes = self.nodes[floor:]  # the search below never backs into the prefix
    more = base.begin(self)
    self.nodes = prefix + self.nodes
    return more


def run_subtree(task: SubtreeTask) -> SubtreeResult:
    """Worker: explore one unit; see the module docstring."""
    prog = task.program.load()
    prefix = [decode_node(d) for d in task.path]
    before = [set(n.backtrack) for n in prefix]
    strat = unit_strategy(STRATEGY_CLASSES[task.strategy], prefix)
    asked = [0]

    def stop() -> str | None:
        asked[0] += 1
        if prog.stop is not None:
            reason = prog.stop()
            if reason is not None:
                return reason
        return "split" if asked[0] > task.budget else None

    # A violation is minimised once, by the coordinator's finish_violation,
    # for the one reported: several units may find one.
    res = engine.explore(prog.setup, prog.threads, strategy=strat, check=prog.check,
                         invariant=prog.invariant, observe=prog.observe,
                         max_steps=prog.max_steps, stop=stop, minimize=False)
    additions = [sorted(n.backtrack - b) for n, b in zip(strat.nodes, before, strict=False)]
    stack = [encode_node(n) for n in strat.nodes[len(prefix):]] if res.cut_by == "split" \
        else []
    finals = prog.finals() if prog.finals is not None else None
    return SubtreeResult(res, additions, getattr(strat, "deferred", []), stack, finals)


@dataclass
class FinishTask:
    program: ProgramRef
    violation: engine.Violation


def finish_violation(task: FinishTask) -> engine.Violation:
    """Worker: the violation a split search reports, minimised (fewest
    preemptions, then fewest steps) and traced, as the serial search does."""
    from ..engine.explore import _minimize, _normalise_threads, _traced
    prog = task.program.load()
    specs = _normalise_threads(prog.threads)
    v = task.violation
    if v.preemptions > 0:
        v = _minimize(prog.setup, specs, v, prog.max_steps, prog.check, prog.invariant, 2000)
    return _traced(prog.setup, specs, v, prog.max_steps, prog.check, prog.invariant,
                   prog.observe)


# -------------------------------------------------------------- coordinator


class _CNode:
    """A node the coordinator owns, with the path of (node, choice, done, branch,
    rank) above it; ``rank`` orders a node's alternatives as the serial search
    takes them, so a path's ranks order units as the serial search would."""

    __slots__ = ("node", "path", "dispatched", "ranks", "queued", "taken")

    def __init__(self, node: Node, path: list) -> None:
        self.node = node
        self.path = path
        # A choice node explores its values in order: those up to the chosen one
        # are explored (a step node lists its explored threads in ``done``).
        self.dispatched = set(node.done) | {node.chosen} if node.kind == "s" \
            else set(range(node.chosen + 1))
        self.ranks = len(node.done) + 1 if node.kind == "s" else node.n
        self.queued = False  # a lazy entry of its wakeup tree is on the queue
        # The wakeup-tree branches handed out here: (path, the branch's tree).
        self.taken: list[tuple[list, Any]] = []

    def rank(self, chosen: int) -> int:
        if self.node.kind == "c":
            return chosen
        r = self.ranks
        self.ranks += 1
        return r


class _Inserter(OptimalDporStrategy):
    """Optimal DPOR's wakeup-tree insertion on the coordinator's nodes, for the
    reversals workers send (plain data, see :func:`_portable`)."""

    def _keyed(self, acc: Any, lim: int, nser: int) -> tuple:
        # As OptimalDporStrategy._keyed, from an access's (serial, number).
        return tuple((2 * serial if 0 <= serial < nser else
                      2 * num + 1 if 0 <= num < lim else _NEW, mode)
                     for _o, serial, num, mode in acc)

    def insert(self, cn: _CNode, entry: tuple, items: list, accs: list) -> list | None:
        """Insert a reversal found below ``entry`` (a unit's path entry at
        ``cn``) into the wakeup tree of ``cn``, as the serial search would
        have when it found it; returns the path of a late unit, if one is needed.

        The serial search would have found it while exploring ``entry``'s
        branch: the branches before it there were explored (they count as
        asleep), the ones after it were not, even those handed out since.
        When the sequence falls into one of those (its thread is a weak
        initial of the sequence), the serial search would have extended that
        branch's wakeup tree before exploring it.  That branch's unit is
        already out, so a *late unit* explores the extension instead: the
        same branch, following the part of its wakeup tree that leads to the
        extension, the branches left of that path as ghosts (explored by the
        other unit, asleep here as in the serial search), then the extension.
        """
        node = cn.node
        _cn, _chosen, done, _cur, rank = entry
        for q in node.sleep | done:
            acc = accs[q] if q < len(accs) else ()
            if _portable_weak_initial(q, acc, items):
                return None
        self.guessed = False
        for path, t in cn.taken:
            if path[-1][4] <= rank:
                continue
            if self._tree_weak_initial(t, items):
                tree = self._late(node, t, items)
                if tree is None:
                    return None
                last = path[-1]
                return path[:-1] + [(cn, t.tid, last[2], tree, last[4])]
        self._insert(node, items, self.guessed)
        return None

    def _late(self, node: Node, t: Any, items: list) -> Any:
        """The wakeup tree of a late unit for branch ``t`` (see :meth:`insert`);
        None when ``t``'s tree already covers the sequence.  The extension is
        also added to ``t`` itself, for the reversals that come later."""
        rest = _without_first(items, t.tid)
        if not rest or (not t.kids and t.sure):
            return None
        root = _W(t.tid, t.kacc, t.lim, t.nser, [], t.sure)
        src, dst, items = t.kids, root.kids, rest
        while True:
            for i, w in enumerate(src):
                if self._tree_weak_initial(w, items):
                    rest = _without_first(items, w.tid)
                    if not rest or (not w.kids and w.sure):
                        return None
                    dst.extend(_W(x.tid, x.kacc, x.lim, x.nser, [], x.sure, True)
                               for x in src[:i])
                    follow = _W(w.tid, w.kacc, w.lim, w.nser, [], w.sure)
                    dst.append(follow)
                    src, dst, items = w.kids, follow.kids, rest
                    break
            else:
                dst.extend(_W(x.tid, x.kacc, x.lim, x.nser, [], x.sure, True) for x in src)
                lim, nser, sure = node.nobj, node.nser, not self.guessed
                for chain in (src, dst):
                    for it_tid, it_acc, _c, _s in items:
                        w = _W(it_tid, self._keyed(it_acc, lim, nser), lim, nser, [], sure)
                        chain.append(w)
                        chain = w.kids
                return root


def _portable_dependent(a: Any, b: Any) -> bool:
    return any(oa == ob and CONFLICT[ma][mb] for oa, _s, _n, ma in a for ob, _t, _m, mb in b)


def _portable_weak_initial(q: int, acc: Any, items: list) -> bool:
    """odpor's ``_weak_initial`` on portable accesses (one message's object numbers)."""
    first = _first_unordered(q, items)
    if first is not None:
        return first
    if not acc:
        return True
    return all(not _portable_dependent(acc, a) for _tid, a, _c, _s in items)


@dataclass
class SplitOutcome:
    result: engine.Result
    finals: set | None
    units: int
    late: int = 0  # of the units, late ones (see _Inserter.insert)


def explore_split(program: ProgramRef, backend: Backend, strategy: str = "dpor", *,
                  budget: int = SPLIT_BUDGET, ahead: int = LOOKAHEAD,
                  progress: Callable[[int, int], None] | None = None) -> SplitOutcome:
    """Explore ``program`` with units on ``backend``; counts add up over the units.

    Units' results are merged in the order the units were handed out (at most
    ``ahead`` per worker wait beyond the running ones), so a run is
    deterministic: what the coordinator learns, and so every unit it hands
    out, does not depend on which worker finished first.  A violation stops
    the units that the serial search would run after it; those before it run
    on, and the violation reported is the one the serial order meets first.
    ``progress(executions, units)`` is called as units end.
    """
    proto = STRATEGY_CLASSES[strategy]()
    inserter = _Inserter()
    start = time.perf_counter()
    queue: list = [[]]  # unit paths (or dpor nodes with branches left), deepest last
    inflight: list[tuple[Any, list]] = []  # in the order handed out
    executions = blocked = depth = units = nlate = steps = replayed = 0
    violation: engine.Violation | None = None
    vkey: tuple | None = None  # the serial-order rank of the unit that found it
    cut_by: str | None = None
    finals: set | None = None
    complete = True

    def key(path: list) -> tuple:
        return tuple(entry[4] for entry in path)

    def submit(path: list) -> None:
        last = len(path) - 1
        encoded = [encode_node(cn.node, chosen, done, cur, prefix=i < last)
                   for i, (cn, chosen, done, cur, _r) in enumerate(path)]
        h = backend.submit(run_subtree, SubtreeTask(program, strategy, encoded, budget))
        inflight.append((h, path))

    def take() -> list | None:
        """The next unit's path off the queue (a dpor node gives its next branch)."""
        while queue:
            entry = queue.pop()
            if isinstance(entry, list):
                if vkey is None or key(entry) < vkey:
                    return entry
                continue
            cn = entry
            node = cn.node
            while node.wut:
                w = node.wut.pop(0)
                if w.tid in node.enabled and w.tid not in cn.dispatched:
                    path = cn.path + [(cn, w.tid, set(cn.dispatched), w, cn.rank(w.tid))]
                    cn.dispatched.add(w.tid)
                    # The coordinator's own copy: late units extend it (_late),
                    # never the branch the path's units were sent.
                    cn.taken.append((path, w.copy()))
                    if vkey is not None and key(path) > vkey:
                        continue
                    if node.wut:
                        queue.append(cn)  # its next branch after this one's subtree
                    else:
                        cn.queued = False
                    return path
                inserter.blocked_branches += 1
            cn.queued = False
        return None

    try:
        while queue or inflight:
            while cut_by is None and len(inflight) < backend.jobs * (1 + ahead):
                path = take()
                if path is None:
                    break
                submit(path)
            if not inflight:
                break
            h, path = inflight.pop(0)
            backend.wait([h])
            sub: SubtreeResult = backend.result(h)
            r = sub.result
            units += 1
            executions += r.executions
            steps += r.steps
            replayed += r.replayed_steps
            blocked += r.sleep_blocked
            depth = max(depth, r.max_depth)
            if sub.finals is not None:
                finals = (finals or set()) | sub.finals
            if r.violation is not None and (vkey is None or key(path) < vkey):
                violation, vkey = r.violation, key(path)
                # The units the serial search runs after this one stop.
                inflight = [(h2, p2) for h2, p2 in inflight if key(p2) < vkey]
            if r.cut_by not in (None, "split"):
                complete = False
                cut_by = cut_by or r.cut_by
            elif r.cut_by is None and not r.complete:
                complete = False
            late: list = []
            owned = _merge(path, sub, inserter, late)
            if cut_by is None:
                _expand(proto, owned, queue)
                queue.extend(reversed(late))
                nlate += len(late)
            if progress is not None:
                progress(executions, units)
    except KeyboardInterrupt:
        backend.stop()
        cut_by = "interrupted"
        complete = False
        for h, _ in inflight:  # count what the stopped units ran
            try:
                r = backend.result(h).result
            except BaseException:  # noqa: BLE001 - a cancelled unit ran nothing we can see
                continue
            executions += r.executions
    if violation is not None:
        backend.stop()
        complete = False
        if cut_by != "interrupted":
            h = backend.submit(finish_violation, FinishTask(program, violation))
            backend.wait([h])
            violation = backend.result(h)
    result = engine.Result(strategy=strategy, executions=executions, complete=complete,
                           violation=violation, elapsed=time.perf_counter() - start,
                           cut_by=cut_by, sleep_blocked=blocked, max_depth=depth,
                           steps=steps, replayed_steps=replayed)
    return SplitOutcome(result, finals, units, nlate)


def _merge(path: list, sub: SubtreeResult, inserter: _Inserter, late: list
           ) -> list[_CNode]:
    """Fold a unit's result into the coordinator's nodes; return the nodes it
    touched.  Late units (see :meth:`_Inserter.insert`) go on ``late``."""
    owned = [entry[0] for entry in path]
    for cn, added in zip(owned, sub.additions, strict=False):
        cn.node.backtrack.update(added)
    for index, *reversal in sub.reversals:
        cn = owned[index]
        if len(reversal) == 1:  # source-dpor: the initials of a reversal
            add_reversal(cn.node, reversal[0])
        else:  # optimal dpor: the sequence and the node's accesses
            late_path = inserter.insert(cn, path[index], *reversal)
            if late_path is not None:
                late.append(late_path)
    prefix = list(path)
    for data in sub.stack:
        node = decode_node(data)
        cn = _CNode(node, list(prefix))
        owned.append(cn)
        prefix.append((cn, node.chosen, set(node.done), node.cur, len(node.done)
                       if node.kind == "s" else node.chosen))
    return owned


def _expand(proto: TreeStrategy, owned: list[_CNode], queue: list) -> None:
    """Queue every alternative of ``owned`` not yet handed out.

    The queue is a stack; the units go on it so that the deepest node's lowest
    alternative comes off first, the order of the serial search, and each
    alternative's explored-before set is the serial one (the lower ones).  An
    optimal-DPOR node goes on it as itself: its branches are taken one at a
    time when a worker is free, so a reversal that arrives meanwhile still
    extends the branches not handed out, as in the serial search.
    """
    for cn in owned:
        node = cn.node
        if node.kind == "s" and node.wut is not None:
            if node.wut and not cn.queued:
                cn.queued = True
                queue.append(cn)
            continue
        if node.kind == "c":
            alts = [v for v in range(node.n) if v not in cn.dispatched]
        else:
            probe = Node("s")
            probe.backtrack, probe.done, probe.sleep = node.backtrack, cn.dispatched, node.sleep
            alts = [a for a in proto.alternatives(probe) if a in node.enabled]
        units = []
        for alt in alts:
            units.append(cn.path + [(cn, alt, set(cn.dispatched), None, cn.rank(alt))])
            cn.dispatched.add(alt)
        queue.extend(reversed(units))
