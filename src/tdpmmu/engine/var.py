"""Shared variables whose loads and stores are visible operations."""

from __future__ import annotations

from typing import Any

from . import runtime
from .access import READ, WRITE, update_mode


class Var:
    """A shared word: ``load`` and ``store`` are visible operations in a model thread.

    Outside model threads (setup, check) they read and write directly.  Each
    store bumps ``version`` so that a thread spinning on the value can be treated
    as blocked until another thread writes (see :func:`cpu_relax`).
    """

    __slots__ = ("value", "version", "name", "_serial", "__weakref__")

    def __init__(self, value: Any = None, name: str | None = None) -> None:
        self.value = value
        self.version = 0
        self.name = name
        self._serial = runtime.new_serial()

    def load(self) -> Any:
        runtime.visible(f"load {self.name or 'var'}", ((self, READ),))
        note_read(self)
        return self.value

    def store(self, value: Any) -> None:
        runtime.visible(f"store {self.name or 'var'}", ((self, WRITE),))
        self.value = value
        self.version += 1

    def add(self, delta: Any) -> None:
        """Add ``delta`` without looking at the result: a commuting update
        (``atomic_add``; see :data:`~tdpmmu.engine.access.UPDATE`).  A word
        that is added to must not also be stored to by other threads in
        ways that do not commute with adding; loads and stores are ordered
        against the adds as against any write."""
        runtime.visible(f"add {self.name or 'var'}", ((self, update_mode()),))
        self.value += delta
        self.version += 1

    def __repr__(self) -> str:
        return f"Var({self.value!r})" if self.name is None else f"Var({self.name}={self.value!r})"


def note_read(obj: Any) -> None:
    """Remember that the running thread read ``obj`` (for spin-wait detection)."""
    t = runtime.current_thread()
    if t is not None:
        reads = t.local.get("spin_reads")
        if reads is None:
            reads = t.local["spin_reads"] = {}
        reads[obj] = obj.version


def cpu_relax() -> None:
    """The pause in a spin loop.

    A thread that spins re-reads values nobody else changes; exploring each
    iteration would make an endless branch.  Instead the thread blocks here
    until another thread has written one of the shared objects it read since
    its previous ``cpu_relax`` (objects must carry a ``version`` counter, as
    :class:`Var` does).  If nobody ever writes, the run ends as a deadlock.
    """
    t = runtime.current_thread()
    if t is None:
        return
    reads = t.local.pop("spin_reads", None) or {}
    if not reads:
        runtime.visible("cpu_relax")
        return
    snapshot = list(reads.items())

    def changed() -> bool:
        return any(obj.version != seen for obj, seen in snapshot)

    names = ", ".join(getattr(o, "name", None) or type(o).__name__ for o, _ in snapshot)
    runtime.visible("cpu_relax", tuple((o, READ) for o, _ in snapshot), changed,
                    waits_for=f"a write to {names}")
