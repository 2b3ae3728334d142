"""Uniform random scheduling: each step picks an enabled thread at random."""

from __future__ import annotations

import random as _random
from typing import Any

from .base import Strategy


class RandomStrategy(Strategy):
    name = "random"

    def __init__(self, seed: int = 0, executions: int = 1000) -> None:
        self.rng = _random.Random(seed)
        self.left = executions

    def begin(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True

    def pick(self, ex: Any, enabled: list) -> Any:
        return enabled[self.rng.randrange(len(enabled))] if len(enabled) > 1 else enabled[0]

    def choose(self, ex: Any, n: int) -> int:
        return self.rng.randrange(n)
