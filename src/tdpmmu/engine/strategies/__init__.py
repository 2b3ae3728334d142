"""Exploration strategies, one module each, behind the small :class:`Strategy` interface."""

from __future__ import annotations

from .base import Strategy
from .dfs import BoundedStrategy, DfsStrategy
from .dpor import DporStrategy
from .pct import PctStrategy
from .random import RandomStrategy
from .replay import ReplayMismatch, ReplayStrategy

STRATEGIES = ("dfs", "dpor", "bounded", "pct", "random")

__all__ = ["STRATEGIES", "BoundedStrategy", "DfsStrategy", "DporStrategy", "PctStrategy",
           "RandomStrategy", "ReplayMismatch", "ReplayStrategy", "Strategy"]
