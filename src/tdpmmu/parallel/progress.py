"""Progress on a terminal: executions, their rate, and an estimate of the tree left.

The estimate is Knuth's (Math. Comp. 1975): along one root-to-leaf path the
number of leaves of a tree is estimated by the product of the branching
factors met on it.  Here the path is the current execution's, the branching
factor of a node what the search has to explore there (for DPOR its backtrack
set, which grows as races are found, so the estimate is a lower one early on),
and the estimate the mean over the paths sampled so far.  Nothing is shown
with ``--json``, in CI, or when stderr is not a terminal.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

REFRESH = 0.25  # seconds between two updates of a bar


def knuth_leaves(nodes: list[Any]) -> float:
    """Knuth's estimate of the leaves of a tree from one path's branching factors."""
    est = 1.0
    for node in nodes:
        if node.kind == "c":
            est *= max(1, node.n)
        else:
            est *= max(1, len((node.backtrack | node.done) - node.sleep))
    return est


class Estimator:
    """The running mean of :func:`knuth_leaves` over the sampled paths."""

    def __init__(self) -> None:
        self.total = 0.0
        self.samples = 0

    def sample(self, nodes: list[Any]) -> None:
        self.total += knuth_leaves(nodes)
        self.samples += 1

    def remaining(self, done: int) -> float | None:
        if not self.samples:
            return None
        return max(0.0, self.total / self.samples - done)


def _quiet(quiet: bool) -> bool:
    return quiet or bool(os.environ.get("CI")) or not sys.stderr.isatty()


def _fmt(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n:.0f}"


class CheckBar:
    """One check's line: executions, executions per second, the tree left."""

    def __init__(self, bar: Any, task: Any) -> None:
        self.bar = bar
        self.task = task
        self.start = time.perf_counter()
        self.last = 0.0
        self.strategy: Any = None
        self.estimator = Estimator()

    def watch(self, strategy: Any) -> Any:
        """Read the search tree of ``strategy`` (a tree strategy) for the estimate."""
        self.strategy = strategy
        return strategy

    def tick(self, executions: int) -> None:
        now = time.perf_counter()
        if now - self.last < REFRESH:
            return
        self.last = now
        nodes = getattr(self.strategy, "nodes", None)
        if nodes:
            self.estimator.sample(nodes)
        self._show(executions, self.estimator.remaining(executions), now)

    def split_tick(self, executions: int, units: int) -> None:
        now = time.perf_counter()
        if now - self.last >= REFRESH:
            self.last = now
            self._show(executions, None, now, f"{units} subtrees")

    def _show(self, executions: int, left: float | None, now: float, extra: str = "") -> None:
        rate = executions / max(now - self.start, 1e-9)
        parts = [f"{executions} executions", f"{rate:.0f}/s"]
        if left is not None:
            parts.append(f"~{_fmt(left)} left (Knuth estimate)")
        if extra:
            parts.append(extra)
        self.bar.update(self.task, info="  ".join(parts))


@contextmanager
def check_bar(label: str, quiet: bool) -> Iterator[CheckBar | None]:
    if _quiet(quiet):
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    with Progress(SpinnerColumn(), TextColumn("{task.description}"),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=True,
                  console=Console(stderr=True)) as bar:
        yield CheckBar(bar, bar.add_task(label, total=None, info=""))


unit_bar = check_bar


class MatrixBar:
    def __init__(self, bar: Any, task: Any) -> None:
        self.bar, self.task = bar, task

    def advance(self) -> None:
        self.bar.advance(self.task)


@contextmanager
def matrix_bar(total: int, quiet: bool) -> Iterator[MatrixBar | None]:
    """Checks finished out of ``total``, for checks running in other processes."""
    if _quiet(quiet):
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    with Progress(BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=True,
                  console=Console(stderr=True)) as bar:
        yield MatrixBar(bar, bar.add_task("checks", total=total))
