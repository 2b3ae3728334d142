"""atomic_t, cmpxchg()/xchg(), READ_ONCE()/WRITE_ONCE() over engine ``Var`` words.

Each operation is one visible operation on the word: a READ for loads, an
UPDATE for ``atomic_inc``/``atomic_dec`` (no result: they commute with each
other), a WRITE for anything else that may store (a failed ``cmpxchg`` is declared a WRITE too,
which is sound and keeps the declaration independent of the outcome).  Stores
bump the word's ``version`` and loads call ``note_read``, so spin loops around
these operations can block in ``cpu_relax()`` until another thread writes.
"""

from __future__ import annotations

from typing import Any

from ..engine import runtime
from ..engine.access import READ, WRITE, update_mode
from ..engine.runtime import visible
from ..engine.var import Var, note_read

runtime.hide_frames_of(__file__)


class atomic_t(Var):
    """An atomic int; ``counter`` is its value (an engine ``Var``)."""

    __slots__ = ()
    __kasan_ignore__ = frozenset({"name", "version"})

    def __init__(self, i: int = 0, name: str | None = None) -> None:
        super().__init__(i, name)

    @property
    def counter(self) -> int:
        return self.value

    def __repr__(self) -> str:
        return f"atomic_t({self.name}={self.value})" if self.name else f"atomic_t({self.value})"


def ATOMIC_INIT(i: int) -> atomic_t:
    return atomic_t(i)


def _label(op: str, v: Var) -> str:
    return f"{op}({v.name})" if v.name else op


def _load(op: str, v: Var) -> Any:
    visible(_label(op, v), ((v, READ),))
    note_read(v)
    return v.value


def _rmw(op: str, v: Var) -> Any:
    """Announce a read-modify-write of ``v``; returns its old value."""
    visible(_label(op, v), ((v, WRITE),))
    note_read(v)
    return v.value


def _store(v: Var, value: Any) -> None:
    v.value = value
    v.version += 1


def READ_ONCE(v: Var) -> Any:
    """A single load of the shared word ``v``."""
    return _load("READ_ONCE", v)


def WRITE_ONCE(v: Var, value: Any) -> None:
    """A single store to the shared word ``v``."""
    visible(_label("WRITE_ONCE", v), ((v, WRITE),))
    _store(v, value)


def atomic_read(v: atomic_t) -> int:
    return _load("atomic_read", v)


def atomic_set(v: atomic_t, i: int) -> None:
    visible(_label("atomic_set", v), ((v, WRITE),))
    _store(v, i)


def atomic_add_return(i: int, v: atomic_t) -> int:
    new = _rmw("atomic_add_return", v) + i
    _store(v, new)
    return new


def atomic_sub_return(i: int, v: atomic_t) -> int:
    new = _rmw("atomic_sub_return", v) - i
    _store(v, new)
    return new


def atomic_inc(v: atomic_t) -> None:
    """No result: an update, commuting with other increments and decrements."""
    visible(_label("atomic_inc", v), ((v, update_mode()),))
    _store(v, v.value + 1)


def atomic_dec(v: atomic_t) -> None:
    """No result: an update, commuting with other increments and decrements."""
    visible(_label("atomic_dec", v), ((v, update_mode()),))
    _store(v, v.value - 1)


def atomic_inc_return(v: atomic_t) -> int:
    return atomic_add_return(1, v)


def atomic_dec_return(v: atomic_t) -> int:
    return atomic_sub_return(1, v)


def atomic_dec_and_test(v: atomic_t) -> bool:
    """Decrement; True when the result is 0."""
    new = _rmw("atomic_dec_and_test", v) - 1
    _store(v, new)
    return new == 0


def cmpxchg(v: Var, old: Any, new: Any) -> Any:
    """Store ``new`` if ``v`` holds ``old``; returns the value found (``old`` on success)."""
    found = _rmw("cmpxchg", v)
    if found == old:
        _store(v, new)
    return found


def xchg(v: Var, new: Any) -> Any:
    """Store ``new``; returns the previous value."""
    found = _rmw("xchg", v)
    _store(v, new)
    return found


def atomic_cmpxchg(v: atomic_t, old: int, new: int) -> int:
    return cmpxchg(v, old, new)


def atomic_xchg(v: atomic_t, new: int) -> int:
    return xchg(v, new)
