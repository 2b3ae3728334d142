"""Systematic search over the tree of decisions, re-executing from the start.

The tree is kept as a stack of nodes, one per decision of the current
execution: a *step* node (which thread runs) or a *choice* node (which value
``choose`` returns).  An execution replays the stack's choices as a forced
prefix, then extends it with new nodes; afterwards the deepest node with an
unexplored alternative is advanced and everything below it dropped.  Memory
grows with depth, not with the number of executions.
"""

from __future__ import annotations

from typing import Any

from ..runtime import EngineError
from .base import Strategy


class Node:
    __slots__ = ("kind", "chosen", "enabled", "backtrack", "done", "sleep", "n", "wut", "cur",
                 "sacc", "nobj", "nser")

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "s": which thread steps; "c": which value
        self.chosen = 0
        self.enabled: frozenset[int] = frozenset()
        self.backtrack: set[int] = set()
        self.done: set[int] = set()
        self.sleep: frozenset[int] = frozenset()
        self.n = 0  # number of values, for choice nodes
        self.wut: list | None = None  # optimal DPOR: the wakeup tree still to explore
        self.cur: Any = None  # optimal DPOR: the wakeup-tree child being explored
        self.sacc: dict[int, Any] | None = None  # accesses of the sleeping threads here
        self.nobj = 0  # DPOR: objects seen by the events before this node
        self.nser = 0  # DPOR: object serials issued before this node

    # Pickled for a snapshot hand-off (see ..snapshots): ``sacc`` holds the
    # accesses of one execution's objects and is rebuilt where it is needed.
    def __getstate__(self) -> tuple:
        return (self.kind, self.chosen, self.enabled, self.backtrack, self.done, self.sleep,
                self.n, self.wut, self.cur, self.nobj, self.nser)

    def __setstate__(self, st: tuple) -> None:
        (self.kind, self.chosen, self.enabled, self.backtrack, self.done, self.sleep,
         self.n, self.wut, self.cur, self.nobj, self.nser) = st
        self.sacc = None


class TreeStrategy(Strategy):
    """Depth-first search of the decision tree; subclasses say which alternatives count."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.pos = 0
        self.branch = -1  # index of the node whose choice is new in this execution
        # No execution so far reported a broken property (see explore._run_one).
        self.prefix_checked = True
        self.started = False

    # Attributes that describe the current execution, not the search: a
    # snapshot hand-off (see ..snapshots) keeps the receiving process's own.
    EXECUTION_FIELDS = frozenset({"pos"})

    def search_state(self) -> dict[str, Any]:
        """The search's state as plain data (the tree and its bookkeeping)."""
        skip = self.EXECUTION_FIELDS
        return {k: v for k, v in self.__dict__.items() if k not in skip}

    def resumed(self, ex: Any) -> None:
        """The search state was just replaced (:meth:`search_state` of another
        process) in a snapshot of execution ``ex`` taken before decision
        ``self.pos``: make the per-execution state agree with it."""

    # -- hooks for subclasses
    def new_step_node(self, ex: Any, enabled: list, node: Node) -> Any:
        """Fill a new node's backtrack set and return the thread to run."""
        raise NotImplementedError

    def on_step(self, ex: Any, t: Any, node: Node, fresh: bool) -> None:
        """Called for every step, after the thread is chosen (``fresh``: not a replayed prefix)."""

    def alternatives(self, node: Node) -> list[int]:
        return sorted(node.backtrack - node.done)

    # -- Strategy interface
    def begin(self) -> bool:
        if not self.started:
            self.started = True
            self.pos = 0
            return True
        while self.nodes:
            node = self.nodes[-1]
            if node.kind == "c":
                if node.chosen + 1 < node.n:
                    node.chosen += 1
                    return self._restart()
            else:
                node.done.add(node.chosen)
                alts = [a for a in self.alternatives(node) if a in node.enabled]
                if alts:
                    node.chosen = alts[0]
                    return self._restart()
            self.nodes.pop()
        self.complete = self.cut_by is None
        return False

    def _restart(self) -> bool:
        self.branch = len(self.nodes) - 1
        self.pos = 0
        return True

    @staticmethod
    def prefer(enabled: list, last: Any, allowed: Any = None) -> Any:
        """The thread to run at a new node: keep the last one running when allowed
        (fewer preemptions), else the lowest-numbered allowed one."""
        if last is not None and last in enabled and (allowed is None or last.tid in allowed):
            return last
        for t in enabled:
            if allowed is None or t.tid in allowed:
                return t
        return None

    def pick(self, ex: Any, enabled: list) -> Any:
        pos = self.pos
        self.pos += 1
        if pos < len(self.nodes):
            node = self.nodes[pos]
            if node.kind != "s":
                raise EngineError("the model is not deterministic: a value choice was "
                                  f"expected at decision {pos}, got a scheduling step")
            for t in enabled:
                if t.tid == node.chosen:
                    self.on_step(ex, t, node, pos >= self.branch)
                    return t
            raise EngineError(f"the model is not deterministic: thread #{node.chosen} is "
                              f"not enabled at decision {pos} on re-execution")
        node = Node("s")
        node.enabled = frozenset(t.tid for t in enabled)
        t = self.new_step_node(ex, enabled, node)
        if t is None:
            return None
        node.chosen = t.tid
        self.nodes.append(node)
        self.on_step(ex, t, node, True)
        return t

    def choose(self, ex: Any, n: int) -> int:
        pos = self.pos
        self.pos += 1
        if pos < len(self.nodes):
            node = self.nodes[pos]
            if node.kind != "c" or node.n != n:
                raise EngineError("the model is not deterministic: the value choice at "
                                  f"decision {pos} differs on re-execution")
            return node.chosen
        node = Node("c")
        node.n = n
        self.nodes.append(node)
        return 0
