"""Exhaustive depth-first search, and its preemption-bounded form (CHESS)."""

from __future__ import annotations

from typing import Any

from .tree import Node, TreeStrategy


class DfsStrategy(TreeStrategy):
    """Every interleaving: every enabled thread at every step."""

    name = "dfs"

    def new_step_node(self, ex: Any, enabled: list, node: Node) -> Any:
        node.backtrack = set(node.enabled)
        return self.prefer(enabled, ex.last)


class BoundedStrategy(TreeStrategy):
    """Every interleaving with at most ``bound`` preemptions (Musuvathi & Qadeer, PLDI 2007).

    A preemption is a switch away from a thread that could have gone on.  Each
    node remembers the preemptions spent on the way to it, so an alternative is
    offered only while the budget allows; when one is refused the search is
    incomplete and ``cut_by`` says so.
    """

    name = "bounded"

    def __init__(self, bound: int) -> None:
        super().__init__()
        self.bound = bound
        self.spent: list[int] = []  # preemptions before each node on the current path

    def new_step_node(self, ex: Any, enabled: list, node: Node) -> Any:
        last = ex.last
        spent = ex.preemptions
        if last is not None and last in enabled and spent >= self.bound:
            node.backtrack = {last.tid}
            if len(enabled) > 1:
                self.cut_by = "preemption_bound"
        else:
            node.backtrack = set(node.enabled)
        return self.prefer(enabled, last)
