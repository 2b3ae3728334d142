"""The one vocabulary of finding kinds, shared by the text and JSON reports, JUnit
XML and the pytest plugin's ``assert_finds``.

The engine and the kernel layer raise findings with a coarse ``kind`` (a
refcount_t saturation is a ``WARN``, a broken property is ``property``); this
module names each finding as a kernel developer would: ``refcount_t`` for
lib/refcount.c's warnings, the property's own name for a property.  A query
matches a finding when it names its kind, a coarser kind it belongs to
(``WARN`` matches a ``refcount_t`` warning), or the broken property.
"""

from __future__ import annotations

from typing import Any

from ..properties import ALL as PROPERTY_NAMES

BUG = "BUG"
WARN = "WARN"
KVM_BUG_ON = "KVM_BUG_ON"
KASAN = "KASAN"
GPF = "GPF"
LOCKDEP = "lockdep"
REFCOUNT = "refcount_t"
KMEMLEAK = "kmemleak"
DEADLOCK = "deadlock"
LIVELOCK = "livelock"
PROPERTY = "property"
USE_AFTER_FREE = "use-after-free"  # a freed page table reached by the hardware walk
EXCEPTION = "exception"  # the model (or a user's variant) itself raised
ASSERTION = "assertion"  # a user's check function failed

KINDS = (BUG, WARN, KVM_BUG_ON, KASAN, GPF, LOCKDEP, REFCOUNT, KMEMLEAK, DEADLOCK, LIVELOCK,
         PROPERTY, USE_AFTER_FREE, EXCEPTION, ASSERTION)

# A finding of the key kind is also one of the value kind (for matching).
_BROADER = {REFCOUNT: WARN, KVM_BUG_ON: WARN}


def kind_of(v: Any) -> str:
    """The most specific kind of a violation (or root cause): one of :data:`KINDS`."""
    kind = str(v.kind)
    message = str(v.message)
    if kind == WARN and message.startswith("refcount_t:"):
        return REFCOUNT
    if kind == WARN and "KVM_BUG_ON" in message:
        return KVM_BUG_ON
    return kind


def property_of(v: Any) -> str | None:
    """The name of the broken property, when the finding is one."""
    if str(v.kind) != PROPERTY:
        return None
    name = str(v.message).split(":", 1)[0]
    return name if name else None


def labels(v: Any) -> list[str]:
    """Every name a query may use for this finding, most specific first."""
    out = [kind_of(v)]
    if out[0] in _BROADER:
        out.append(_BROADER[out[0]])
    if str(v.kind) not in out:
        out.append(str(v.kind))
    prop = property_of(v)
    if prop is not None:
        out.insert(0, prop)
    return out


def matches(v: Any, wanted: str) -> bool:
    """Whether a violation is a finding of ``wanted`` (a kind or a property name)."""
    return wanted in labels(v)


def check_query(wanted: str) -> None:
    """Reject a kind nobody reports (a typo would otherwise never match)."""
    if wanted not in KINDS and wanted not in PROPERTY_NAMES:
        raise ValueError(f"unknown finding kind {wanted!r} (kinds: {', '.join(KINDS)}; "
                         f"properties: {', '.join(PROPERTY_NAMES)})")


__all__ = ["ASSERTION", "BUG", "DEADLOCK", "EXCEPTION", "GPF", "KASAN", "KINDS", "KMEMLEAK",
           "KVM_BUG_ON", "LIVELOCK", "LOCKDEP", "PROPERTY", "PROPERTY_NAMES", "REFCOUNT",
           "USE_AFTER_FREE", "WARN", "check_query", "kind_of", "labels", "matches",
           "property_of"]
