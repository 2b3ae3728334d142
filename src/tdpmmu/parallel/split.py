"""One tree search (dfs or dpor) split into subtrees that workers explore.

A *unit* is the subtree below a prefix of decisions: the nodes of the prefix
(each with the choice taken and the alternatives explored before it, as the
serial search would have them) and the alternative to take at its last node.
A worker explores it depth-first, exactly as the serial strategy would, and
never advances a node of the prefix.  What it learns about the prefix (DPOR
races that add backtrack points above the unit's root) goes back to the
coordinator, which owns the prefix nodes and hands their new alternatives out
as further units.

A unit that runs more than ``budget`` executions stops between two executions
and hands its whole stack back: every node on it becomes the coordinator's,
and each node's pending alternatives become units.  The split is so adaptive:
big subtrees are cut up, small ones run in one go.  Each execution belongs to
exactly one unit, so the executions add up to what one search runs; they can
differ from ``-j 1`` only where the order in which siblings are explored
(which a sleep set depends on) differs, or a worker did not yet know a
backtrack point another worker had added (then DPOR may add a second one).

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
from ..engine.strategies import DfsStrategy, DporStrategy
from ..engine.strategies.tree import Node, TreeStrategy
from .backend import Backend

SPLIT_BUDGET = 64  # executions of a unit before it hands its stack back
# Optimal DPOR ("dpor") keeps wakeup trees in its nodes, which units do not carry yet.
STRATEGY_CLASSES: dict[str, type[TreeStrategy]] = {"dfs": DfsStrategy,
                                                   "source-dpor": DporStrategy}

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


def encode_node(node: Node, chosen: int | None = None, done: set[int] | None = None
                ) -> list:
    """A node as JSON data; an optimal-DPOR node also carries its wakeup tree
    (the branches left and the one being explored) and its object counts."""
    out = [node.kind, node.chosen if chosen is None else chosen, sorted(node.enabled),
           sorted(node.backtrack), sorted(node.done if done is None else done),
           sorted(node.sleep), node.n]
    if node.wut is not None or node.cur is not None:
        out.append({"wut": [_encode_w(w) for w in node.wut or ()],
                    "cur": None if node.cur is None else _encode_w(node.cur),
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
    return [w.tid, [list(a) for a in w.kacc], w.lim, w.nser, w.sure,
            [_encode_w(k) for k in w.kids]]


def _decode_w(data: list) -> Any:
    from ..engine.strategies.odpor import _W
    tid, kacc, lim, nser, sure, kids = data
    return _W(int(tid), tuple((int(k), int(m)) for k, m in kacc), int(lim), int(nser),
              [_decode_w(k) for k in kids], bool(sure))


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
        methods: dict[str, Any] = {"begin": _unit_begin}
        if hasattr(base, "_reverse"):
            methods["_reverse"] = _unit_reverse
        cls = _UNIT_CLASSES[base] = type(f"Unit{base.__name__}", (base,), methods)
    strat = cls()
    strat.floor = len(prefix)  # type: ignore[attr-defined]
    strat.nodes = list(prefix)
    strat.first = bool(prefix)  # type: ignore[attr-defined]
    strat.deferred = []  # type: ignore[attr-defined]
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
    if more:
        self.branch += floor
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

    res = engine.explore(prog.setup, prog.threads, strategy=strat, check=prog.check,
                         invariant=prog.invariant, observe=prog.observe,
                         max_steps=prog.max_steps, stop=stop)
    additions = [sorted(n.backtrack - b) for n, b in zip(strat.nodes, before, strict=False)]
    stack = [encode_node(n) for n in strat.nodes[len(prefix):]] if res.cut_by == "split" \
        else []
    finals = prog.finals() if prog.finals is not None else None
    return SubtreeResult(res, additions, getattr(strat, "deferred", []), stack, finals)


# -------------------------------------------------------------- coordinator


class _CNode:
    """A node the coordinator owns, with the path of (node, choice, done) above it."""

    __slots__ = ("node", "path", "dispatched")

    def __init__(self, node: Node, path: list) -> None:
        self.node = node
        self.path = path
        self.dispatched = set(node.done) | {node.chosen}


@dataclass
class SplitOutcome:
    result: engine.Result
    finals: set | None
    units: int


def explore_split(program: ProgramRef, backend: Backend, strategy: str = "source-dpor", *,
                  budget: int = SPLIT_BUDGET,
                  progress: Callable[[int, int], None] | None = None) -> SplitOutcome:
    """Explore ``program`` with units on ``backend``; counts add up over the units.

    Stops at the first violation (the others running then finish their
    current execution).  ``progress(executions, units)`` is called as units end.
    """
    proto = STRATEGY_CLASSES[strategy]()
    start = time.perf_counter()
    queue: list[list] = [[]]  # unit paths waiting, a stack: deepest last, as DFS goes
    inflight: dict[int, tuple[Any, list]] = {}
    executions = blocked = depth = units = 0
    violation: engine.Violation | None = None
    cut_by: str | None = None
    finals: set | None = None
    complete = True

    def submit(path: list) -> None:
        encoded = [encode_node(cn.node, chosen, done) for cn, chosen, done in path]
        h = backend.submit(run_subtree, SubtreeTask(program, strategy, encoded, budget))
        inflight[id(h)] = (h, path)

    try:
        while queue or inflight:
            while queue and violation is None and cut_by is None \
                    and len(inflight) < backend.jobs:
                submit(queue.pop())
            if not inflight:
                break
            for h in backend.wait([h for h, _ in inflight.values()]):
                _, path = inflight.pop(id(h))
                sub: SubtreeResult = backend.result(h)
                r = sub.result
                units += 1
                executions += r.executions
                blocked += r.sleep_blocked
                depth = max(depth, r.max_depth)
                if sub.finals is not None:
                    finals = (finals or set()) | sub.finals
                if r.violation is not None and violation is None:
                    violation = r.violation
                    backend.stop()
                if r.cut_by not in (None, "split"):
                    complete = False
                    cut_by = cut_by or r.cut_by
                elif r.cut_by is None and not r.complete:
                    complete = False
                owned = _merge(path, sub)
                if violation is None and cut_by is None:
                    _expand(proto, owned, queue)
                if progress is not None:
                    progress(executions, units)
    except KeyboardInterrupt:
        backend.stop()
        cut_by = "interrupted"
        complete = False
        for h, _ in inflight.values():  # count what the stopped units ran
            try:
                r = backend.result(h).result
            except BaseException:  # noqa: BLE001 - a cancelled unit ran nothing we can see
                continue
            executions += r.executions
    if violation is not None:
        complete = False
    result = engine.Result(strategy=strategy, executions=executions, complete=complete,
                           violation=violation, elapsed=time.perf_counter() - start,
                           cut_by=cut_by, sleep_blocked=blocked, max_depth=depth)
    return SplitOutcome(result, finals, units)


def _merge(path: list, sub: SubtreeResult) -> list[_CNode]:
    """Fold a unit's result into the coordinator's nodes; return the nodes it touched."""
    owned = [cn for cn, _, _ in path]
    for cn, added in zip(owned, sub.additions, strict=False):
        cn.node.backtrack.update(added)
    for index, initials in sub.reversals:
        add_reversal(owned[index].node, initials)
    prefix = list(path)
    for data in sub.stack:
        node = decode_node(data)
        cn = _CNode(node, list(prefix))
        owned.append(cn)
        prefix.append((cn, node.chosen, set(node.done)))
    return owned


def _expand(proto: TreeStrategy, owned: list[_CNode], queue: list[list]) -> None:
    """Queue every alternative of ``owned`` not yet handed out.

    The queue is a stack; the units go on it so that the deepest node's lowest
    alternative comes off first, the order of the serial search, and each
    alternative's explored-before set is the serial one (the lower ones).
    """
    for cn in owned:
        node = cn.node
        if node.kind == "c":
            alts = [v for v in range(node.n) if v not in cn.dispatched]
        else:
            probe = Node("s")
            probe.backtrack, probe.done, probe.sleep = node.backtrack, cn.dispatched, node.sleep
            alts = [a for a in proto.alternatives(probe) if a in node.enabled]
        units = []
        for alt in alts:
            units.append(cn.path + [(cn, alt, set(cn.dispatched))])
            cn.dispatched.add(alt)
        queue.extend(reversed(units))
