"""Independent checks of a matrix, run in parallel, reported in matrix order.

Each check is one work unit; results come back in any order but are handed to
``on_result`` in the order of ``units``, so the output is the one of ``-j 1``.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import engine
from .backend import Backend
from .units import CheckUnit, run_unit


class Interrupted(Exception):  # noqa: N818 - not an error: the user stopped the run
    """Ctrl-C: ``results`` holds what finished (None for the rest)."""

    def __init__(self, results: list[engine.Result | None]) -> None:
        super().__init__("interrupted")
        self.results = results


def run_matrix(units: list[CheckUnit], backend: Backend,
               on_result: Callable[[int, engine.Result], None] | None = None
               ) -> list[engine.Result]:
    handles = [backend.submit(run_unit, u) for u in units]
    index = {id(h): i for i, h in enumerate(handles)}
    results: list[engine.Result | None] = [None] * len(units)
    reported = 0
    pending = list(handles)
    try:
        while pending:
            for h in backend.wait(pending):
                pending.remove(h)
                results[index[id(h)]] = backend.result(h)
            while reported < len(units) and results[reported] is not None:
                if on_result is not None:
                    on_result(reported, results[reported])  # type: ignore[arg-type]
                reported += 1
    except KeyboardInterrupt:
        backend.stop()
        raise Interrupted(_finished(backend, handles, results)) from None
    return results  # type: ignore[return-value]


def _finished(backend: Backend, handles: list, results: list[engine.Result | None]
              ) -> list[engine.Result | None]:
    """After a stop: the results of the checks that ran to their end."""
    for i, h in enumerate(handles):
        if results[i] is not None:
            continue
        try:
            r = backend.result(h)
        except BaseException:  # noqa: BLE001 - cancelled or killed: nothing finished
            continue
        if r.cut_by != "interrupted":
            results[i] = r
    return results
