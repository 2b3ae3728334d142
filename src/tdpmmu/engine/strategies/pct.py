"""PCT (probabilistic concurrency testing, Burckhardt et al., ASPLOS 2010).

Each execution gives the threads random distinct priorities and picks ``depth
- 1`` random change points among the steps; the enabled thread with the highest
priority always runs, and at the i-th change point the running thread drops to
priority i (below every initial priority).  A bug of depth d is found by one
execution with probability at least 1/(n * k^(d-1)).
"""

from __future__ import annotations

import random as _random
from typing import Any

from .base import Strategy


class PctStrategy(Strategy):
    name = "pct"

    def __init__(self, seed: int = 0, executions: int = 1000, depth: int = 3) -> None:
        self.rng = _random.Random(seed)
        self.left = executions
        self.depth = depth
        self.k = 64  # estimated steps per execution, learnt as executions run
        self.prio: dict[int, float] = {}
        self.change: dict[int, int] = {}
        self.step = 0

    def begin(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        self.prio = {}
        self.step = 0
        points = self.rng.sample(range(1, self.k + 1), min(self.depth - 1, self.k))
        self.change = {p: i for i, p in enumerate(sorted(points), start=1)}
        return True

    def _priority(self, tid: int) -> float:
        p = self.prio.get(tid)
        if p is None:
            p = self.prio[tid] = self.depth + self.rng.random() * 1e6
        return p

    def pick(self, ex: Any, enabled: list) -> Any:
        self.step += 1
        best = max(enabled, key=lambda t: self._priority(t.tid))
        lowered = self.change.get(self.step)
        if lowered is not None:
            self.prio[best.tid] = self.depth - lowered
            best = max(enabled, key=lambda t: self._priority(t.tid))
        return best

    def choose(self, ex: Any, n: int) -> int:
        return self.rng.randrange(n)

    def end(self, ex: Any) -> None:
        self.k = max(self.k, ex.nsteps)
