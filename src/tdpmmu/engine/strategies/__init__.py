"""Exploration strategies, one module each, behind the small :class:`Strategy` interface."""

from __future__ import annotations

from .base import Strategy
from .dfs import BoundedStrategy, DfsStrategy
from .dpor import DporStrategy
from .odpor import OptimalDporStrategy
from .pct import PctStrategy
from .random import RandomStrategy
from .replay import ReplayMismatch, ReplayStrategy

STRATEGIES = ("dfs", "dpor", "bounded", "pct", "random", "source-dpor")

__all__ = ["STRATEGIES", "BoundedStrategy", "DfsStrategy", "DporStrategy", "OptimalDporStrategy",
           "PctStrategy", "RandomStrategy", "ReplayMismatch", "ReplayStrategy", "Strategy"]
