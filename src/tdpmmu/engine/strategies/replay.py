"""Replay: run exactly the decisions of a schedule token."""

from __future__ import annotations

from typing import Any

from ..runtime import EngineError
from .base import Strategy


class ReplayMismatch(EngineError):  # noqa: N818 - the public API's name
    """The schedule does not fit this program (another program, version or scenario)."""


class ReplayStrategy(Strategy):
    name = "replay"

    def __init__(self, decisions: list[int]) -> None:
        self.decisions = decisions
        self.pos = 0
        self.started = False

    def begin(self) -> bool:
        if self.started:
            return False
        self.started = True
        self.complete = True
        return True

    def _next(self, what: str) -> int:
        if self.pos >= len(self.decisions):
            raise ReplayMismatch(f"schedule ends at decision {self.pos} but the program "
                                 f"wants another {what}")
        d = self.decisions[self.pos]
        self.pos += 1
        return d

    def pick(self, ex: Any, enabled: list) -> Any:
        d = self._next("step")
        if d & 1:
            raise ReplayMismatch(f"decision {self.pos - 1} is a value choice, "
                                 "but the program schedules a step there")
        tid = d >> 1
        for t in enabled:
            if t.tid == tid:
                return t
        names = ", ".join(t.name for t in enabled)
        raise ReplayMismatch(f"decision {self.pos - 1} runs thread #{tid}, which is not "
                             f"enabled there (enabled: {names})")

    def choose(self, ex: Any, n: int) -> int:
        d = self._next("value choice")
        if not d & 1 or (d >> 1) >= n:
            raise ReplayMismatch(f"decision {self.pos - 1} does not fit a choice of {n} values")
        return d >> 1
