"""refcount_t with lib/refcount.c's saturation and warnings.

Every operation is one visible operation on the refcount object (READ for
``refcount_read``, WRITE otherwise, including a failing
``refcount_inc_not_zero``).  On misuse the kernel saturates the count at
``REFCOUNT_SATURATED`` and warns once per kind:

- increment from 0: ``refcount_t: addition on 0; use-after-free.``
- decrement below 0 (``refcount_dec_and_test``): ``refcount_t: underflow; use-after-free.``
- ``refcount_dec`` to 0 or below: ``refcount_t: decrement hit 0; leaking memory.``
- overflow past INT_MAX: ``refcount_t: saturated; leaking memory.``

The warnings are WARNs located at ``lib/refcount.c: refcount_warn_saturate``
(fatal by default, see ``set_panic_on_warn``); the finding names the model
function that called the refcount operation.
"""

from __future__ import annotations

from ..engine import runtime
from ..engine.access import READ, WRITE
from ..engine.runtime import visible
from ..engine.var import note_read
from .bug import warn_at

runtime.hide_frames_of(__file__)

INT_MAX = 2**31 - 1
REFCOUNT_SATURATED = -(2**31) // 2  # INT_MIN / 2

# enum refcount_saturation_type -> the warning's text (each is its own WARN_ONCE site)
ADD_NOT_ZERO_OVF = "REFCOUNT_ADD_NOT_ZERO_OVF"
ADD_OVF = "REFCOUNT_ADD_OVF"
ADD_UAF = "REFCOUNT_ADD_UAF"
SUB_UAF = "REFCOUNT_SUB_UAF"
DEC_LEAK = "REFCOUNT_DEC_LEAK"
_TEXT = {
    ADD_NOT_ZERO_OVF: "saturated; leaking memory",
    ADD_OVF: "saturated; leaking memory",
    ADD_UAF: "addition on 0; use-after-free",
    SUB_UAF: "underflow; use-after-free",
    DEC_LEAK: "decrement hit 0; leaking memory",
}


class refcount_t:
    """A reference count (``refs`` is the plain int value)."""

    __slots__ = ("refs", "version", "name", "__weakref__")
    __kasan_ignore__ = frozenset({"name", "version"})

    def __init__(self, n: int = 0, name: str | None = None) -> None:
        self.refs = n
        self.version = 0
        self.name = name

    def __repr__(self) -> str:
        return f"refcount_t({self.name}={self.refs})" if self.name else f"refcount_t({self.refs})"


def REFCOUNT_INIT(n: int) -> refcount_t:
    return refcount_t(n)


def _op(op: str, r: refcount_t, mode: int = WRITE) -> int:
    visible(f"{op}({r.name})" if r.name else op, ((r, mode),))
    note_read(r)
    return r.refs


def _set(r: refcount_t, n: int) -> None:
    r.refs = n
    r.version += 1


def refcount_warn_saturate(r: refcount_t, kind: str) -> None:
    """Saturate ``r`` and warn (once per kind and execution)."""
    _set(r, REFCOUNT_SATURATED)
    warn_at(f"refcount_t: {_TEXT[kind]}.", "lib/refcount.c", "refcount_warn_saturate",
            once_key=("refcount", kind))


def refcount_set(r: refcount_t, n: int) -> None:
    visible(f"refcount_set({r.name})" if r.name else "refcount_set", ((r, WRITE),))
    _set(r, n)


def refcount_read(r: refcount_t) -> int:
    return _op("refcount_read", r, READ)


def refcount_add(i: int, r: refcount_t) -> None:
    old = _op("refcount_add", r)
    _set(r, old + i)
    if old == 0:
        refcount_warn_saturate(r, ADD_UAF)
    elif old < 0 or old + i > INT_MAX:
        refcount_warn_saturate(r, ADD_OVF)


def refcount_inc(r: refcount_t) -> None:
    """Take a reference; the caller must already hold one (else: addition on 0)."""
    old = _op("refcount_inc", r)
    _set(r, old + 1)
    if old == 0:
        refcount_warn_saturate(r, ADD_UAF)
    elif old < 0 or old + 1 > INT_MAX:
        refcount_warn_saturate(r, ADD_OVF)


def refcount_inc_not_zero(r: refcount_t) -> bool:
    """Take a reference unless the count is 0; True on success."""
    old = _op("refcount_inc_not_zero", r)
    if old == 0:
        return False
    _set(r, old + 1)
    if old < 0 or old + 1 > INT_MAX:
        refcount_warn_saturate(r, ADD_NOT_ZERO_OVF)
    return True


def refcount_sub_and_test(i: int, r: refcount_t) -> bool:
    """Drop ``i`` references; True when the count reaches 0."""
    old = _op("refcount_sub_and_test", r)
    _set(r, old - i)
    if old == i:
        return True
    if old < 0 or old - i < 0:
        refcount_warn_saturate(r, SUB_UAF)
    return False


def refcount_dec_and_test(r: refcount_t) -> bool:
    """Drop a reference; True when it was the last one."""
    old = _op("refcount_dec_and_test", r)
    _set(r, old - 1)
    if old == 1:
        return True
    if old < 0 or old - 1 < 0:
        refcount_warn_saturate(r, SUB_UAF)
    return False


def refcount_dec(r: refcount_t) -> None:
    """Drop a reference that must not be the last one."""
    old = _op("refcount_dec", r)
    _set(r, old - 1)
    if old <= 1:
        refcount_warn_saturate(r, DEC_LEAK)
