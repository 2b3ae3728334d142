"""The interface every strategy implements."""

from __future__ import annotations

from typing import Any


class Strategy:
    """Decides, execution after execution, which thread runs each step.

    ``begin()`` starts an execution and says whether there is one to run;
    ``pick(ex, enabled)`` chooses among the enabled threads (None cuts the
    execution short, as a sleep-set-blocked one); ``choose(ex, n)`` picks a
    data value; ``end(ex)`` is told the execution finished.  ``complete`` says
    whether the strategy has covered its whole space, ``cut_by`` which bound
    kept it from doing so.
    """

    name = "?"
    complete = False
    cut_by: str | None = None

    def begin(self) -> bool:
        raise NotImplementedError

    def pick(self, ex: Any, enabled: list) -> Any:
        raise NotImplementedError

    def choose(self, ex: Any, n: int) -> int:
        raise NotImplementedError

    def end(self, ex: Any) -> None:
        """Called after each execution."""
