"""Slab allocation with KASAN-style use-after-free reports and kmemleak.

Objects are ordinary Python objects built by the allocator
(``kmem_cache_alloc(cache, *args)`` calls ``cache.cls(*args)``); the allocator
records where each was allocated (task and model call chain).  Freeing is a
visible operation, a WRITE of the object and of the shared words embedded in
it, so DPOR orders it against every visible access to those words (a
``READ_ONCE`` of a field, an RCU list walk through an embedded ``list_head``).

After the free the object -- and everything embedded in it -- has its class
swapped for a generated subclass whose attribute reads and writes raise
``BUG: KASAN: use-after-free in <accessing function>`` with the allocation and
free stacks.  Live objects pay nothing.  Freeing twice is ``BUG: KASAN:
double-free in <function>``.

*Embedded* means: attribute values (or items of a list/tuple attribute) that
are engine ``Var`` words, ``atomic_t``, ``refcount_t``, ``spinlock_t`` or
``rwlock_t`` objects, and ``list_head``/``rcu_head`` objects whose ``owner`` is
the freed object.  A class lists attributes that merely point to memory it
does not own in ``__slab_pointers__``.  A class whose objects readers reach
through words they declare instead of the object itself (a hardware or RCU
walk of a paging structure declares the positions of the SPTEs it reads, not
the page tables holding them) gives in ``__slab_reached_through__`` a
function of the object returning those words: the free writes them too, so
DPOR orders the free against those walks as well.  Dunder attributes, and names a class
lists in ``__kasan_ignore__`` stay readable: a list_head's ``owner`` (it only
stands for ``container_of`` arithmetic), a ``Var``'s ``version``, and a lock's
state, which the scheduler reads in waiters' enabling predicates at any time
(taking or releasing a freed lock writes it, and that is reported).

Simplifications: an access that is not a visible operation (a plain attribute
read) is only checked when it happens -- DPOR does not look for interleavings
that put a free before it -- so data that other threads may free concurrently
must be read with READ_ONCE/rcu_dereference, as kernel code does.  Report tools
should test ``object_is_freed(obj)`` before reading model objects.

kmemleak: every object still allocated when ``kmemleak_report()`` runs (in a
check after teardown) is a suspected leak -- the model has no pointer scan.
The registry lives for one execution, including setup allocations (see
``context``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ..engine import runtime
from ..engine.access import ACQUIRE, WRITE
from ..engine.runtime import Finding, current_thread, visible
from ..engine.var import Var
from . import callsite, context
from .bug import WARN
from .refcount import refcount_t
from .rwlock import rwlock_t
from .spinlock import spinlock_t

runtime.hide_frames_of(__file__)

_EMBEDDABLE = (Var, refcount_t, spinlock_t, rwlock_t)
_IGNORE_BY_BASE: dict[type, frozenset[str]] = {Var: frozenset({"name", "version"})}


class kmem_cache:
    """A slab cache of objects of one class."""

    __slots__ = ("name", "cls")

    def __init__(self, name: str, cls: type) -> None:
        self.name = name
        self.cls = cls

    def __repr__(self) -> str:
        return f"kmem_cache({self.name})"


@dataclass
class AllocSite:
    """Where and by whom an object was allocated."""

    serial: int
    object: Any
    type_name: str
    cache: str
    task: str
    chain: list[str]

    @property
    def function(self) -> str:
        return self.chain[0] if self.chain else "?"

    def describe(self) -> str:
        return f"{self.type_name}#{self.serial}"


Leak = AllocSite  # a kmemleak record is the leaked object's allocation site


@dataclass
class FreeSite:
    task: str
    chain: list[str]


@dataclass
class _Freed:
    alloc: AllocSite
    free: FreeSite
    path: str  # the freed object, or "object.field" for an embedded one
    keep: Any = None  # keeps the object alive so its id stays unique


@dataclass
class SlabState:
    """The allocator's registry for one execution."""

    live: dict[int, AllocSite] = field(default_factory=dict)
    freed: dict[int, _Freed] = field(default_factory=dict)
    not_leak: set[int] = field(default_factory=set)
    serial: int = 0


def _slab(starting: bool = False, checking: bool = False) -> SlabState:
    data = context.scope(starting, checking)
    st = data.get("slab")
    if st is None:
        st = data["slab"] = SlabState()
    return st


# ------------------------------------------------------------------ freeing
_FREED_CLASS: dict[type, type] = {}
_FREED_TYPES: set[type] = set()


def object_is_freed(obj: Any) -> bool:
    """Has ``obj`` (or the object it is embedded in) been freed?"""
    return type(obj) in _FREED_TYPES


def _ignored(cls: type) -> frozenset[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        names |= klass.__dict__.get("__kasan_ignore__", frozenset())
        names |= _IGNORE_BY_BASE.get(klass, frozenset())
    return frozenset(names)


def _freed_class(cls: type) -> type:
    fc = _FREED_CLASS.get(cls)
    if fc is not None:
        return fc
    ignore = _ignored(cls)
    base_get = cls.__getattribute__

    def getattribute(self: Any, attr: str) -> Any:
        if attr in ignore or (attr.startswith("__") and attr.endswith("__")):
            return base_get(self, attr)
        _use_after_free(self, attr, "Read")

    def setattr_(self: Any, attr: str, value: Any) -> None:
        _use_after_free(self, attr, "Write")

    def delattr_(self: Any, attr: str) -> None:
        _use_after_free(self, attr, "Write")

    def repr_(self: Any) -> str:
        return f"<freed {cls.__name__}>"

    fc = type(cls.__name__, (cls,), {
        "__slots__": (), "__module__": cls.__module__, "__qualname__": cls.__qualname__,
        "__getattribute__": getattribute, "__setattr__": setattr_,
        "__delattr__": delattr_, "__repr__": repr_, "__kasan_freed__": cls,
    })
    _FREED_CLASS[cls] = fc
    _FREED_TYPES.add(fc)
    return fc


def _poison(obj: Any) -> None:
    # A built-in type cannot change class: double frees are still caught, accesses are not.
    with contextlib.suppress(TypeError):
        object.__setattr__(obj, "__class__", _freed_class(type(obj)))


_SLOT_NAMES: dict[type, tuple[str, ...]] = {}  # class -> its slots along the MRO


def _slot_names(cls: type) -> tuple[str, ...]:
    names = _SLOT_NAMES.get(cls)
    if names is None:
        out = []
        for klass in cls.__mro__:
            slots = klass.__dict__.get("__slots__", ())
            out.extend(n for n in ((slots,) if isinstance(slots, str) else slots)
                       if n not in ("__dict__", "__weakref__"))
        names = _SLOT_NAMES[cls] = tuple(out)
    return names


def object_fields(obj: Any) -> list[tuple[str, Any]]:
    """An object's attributes (``__dict__`` and slots), read without KASAN checks."""
    out: list[tuple[str, Any]] = []
    d = getattr(obj, "__dict__", None)
    if d:
        out.extend(d.items())
    for name in _slot_names(type(obj)):
        with contextlib.suppress(AttributeError):
            out.append((name, object.__getattribute__(obj, name)))
    return out


def _is_embedded(value: Any, owner: Any) -> bool:
    if type(value) in _FREED_TYPES:
        return False
    if isinstance(value, _EMBEDDABLE):
        return True
    if getattr(type(value), "__kasan_embedded_in_owner__", False):
        return object.__getattribute__(value, "owner") is owner
    return False


def _embedded(obj: Any) -> list[tuple[str, Any]]:
    skip = getattr(type(obj), "__slab_pointers__", ())
    out: list[tuple[str, Any]] = []
    for name, value in object_fields(obj):
        if name in skip:
            continue
        if isinstance(value, list | tuple):
            out.extend((f"{name}[{i}]", item) for i, item in enumerate(value)
                       if _is_embedded(item, obj))
        elif _is_embedded(value, obj):
            out.append((name, value))
    return out


def _free_accesses(obj: Any, embedded: list[tuple[str, Any]]) -> tuple:
    """What a free touches: the object and its embedded words, each in the mode its
    own operations use (a lock is touched like a trylock: acquire plus its word)."""
    acc: list[tuple[Any, int]] = [(obj, WRITE)]
    reached_through = getattr(type(obj), "__slab_reached_through__", None)
    if reached_through is not None:
        acc.extend((w, WRITE) for w in reached_through(obj))
    for _, e in embedded:
        if isinstance(e, spinlock_t | rwlock_t):
            acc += [(e, ACQUIRE), (e.word, WRITE)]
        else:
            acc.append((e, WRITE))
    return tuple(acc)


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return getattr(cls, "__kasan_freed__", cls).__name__


def describe(obj: Any) -> str:
    """A short deterministic name for an object: ``type#serial`` when slab-allocated."""
    st = _slab()
    rec = st.live.get(id(obj))
    if rec is not None:
        return rec.describe()
    freed = st.freed.get(id(obj))
    if freed is not None:
        return freed.path
    return _type_name(obj)


def _sites(alloc: AllocSite, free: FreeSite) -> list[str]:
    return ["", f"Allocated by task {alloc.task}:", *callsite.indented(alloc.chain),
            "", f"Freed by task {free.task}:", *callsite.indented(free.chain), "",
            f"The buggy address belongs to the object {alloc.describe()} of type "
            f"{alloc.type_name}, which belongs to the cache {alloc.cache}"]


def _use_after_free(obj: Any, attr: str, kind: str) -> NoReturn:
    function = callsite.model_function()
    freed = _slab().freed.get(id(obj))
    what = freed.path if freed is not None else _type_name(obj)
    details = [f"{kind} of {what}.{attr} by task {callsite.task_name()}:",
               *callsite.indented(callsite.call_chain())]
    if freed is not None:
        details += _sites(freed.alloc, freed.free)
    raise Finding("KASAN", f"BUG: KASAN: use-after-free in {function}", function=function,
                  details=details)


def _double_free(obj: Any, st: SlabState, fname: str) -> NoReturn:
    function = callsite.model_function()
    freed = st.freed.get(id(obj))
    details = [f"{fname} of {freed.path if freed else _type_name(obj)} by task "
               f"{callsite.task_name()}:", *callsite.indented(callsite.call_chain())]
    if freed is not None:
        details += _sites(freed.alloc, freed.free)
    if not context.switch("kasan"):
        # Without KASAN, SLAB_FREELIST_HARDENED's check catches the naive case.
        raise Finding("BUG", f"kernel BUG at mm/slub.c: {function}: double free detected",
                      function=function, details=details)
    raise Finding("KASAN", f"BUG: KASAN: double-free in {function}", function=function,
                  details=details)


def _free(obj: Any, cache: kmem_cache | None, fname: str) -> None:
    embedded = [] if type(obj) in _FREED_TYPES else _embedded(obj)
    if current_thread() is not None:
        visible(f"{fname}({_type_name(obj)})", _free_accesses(obj, embedded))
    st = _slab()
    kasan = context.switch("kasan")
    if type(obj) in _FREED_TYPES or id(obj) in st.freed:
        _double_free(obj, st, fname)
    alloc = st.live.pop(id(obj), None)
    if alloc is None:
        st.serial += 1
        alloc = AllocSite(st.serial, obj, _type_name(obj), "?", "?",
                          ["<not allocated through the slab model>"])
    elif cache is not None and alloc.cache != cache.name:
        WARN(True, "%s: Wrong slab cache. %s but object is from %s", fname, cache.name,
             alloc.cache)
    free = FreeSite(callsite.task_name(), callsite.call_chain())
    path = alloc.describe()
    st.freed[id(obj)] = _Freed(alloc, free, path, obj)
    st.not_leak.discard(id(obj))
    for name, e in embedded:
        st.freed[id(e)] = _Freed(alloc, free, f"{path}.{name}", e)
        if kasan:
            _poison(e)
    if kasan:
        _poison(obj)


# --------------------------------------------------------------- allocation
def _alloc(cls: type, cache_name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    obj = cls(*args, **kwargs)
    st = _slab(starting=runtime.current_execution() is None)
    st.serial += 1
    st.live[id(obj)] = AllocSite(st.serial, obj, cls.__name__, cache_name,
                                 callsite.task_name(), callsite.call_chain())
    return obj


def kmem_cache_create(name: str, cls: type) -> kmem_cache:
    """A cache of ``cls`` objects."""
    return kmem_cache(name, cls)


def kmem_cache_alloc(cache: kmem_cache, *args: Any, **kwargs: Any) -> Any:
    """A new ``cache.cls(*args, **kwargs)``, tracked by the allocator."""
    return _alloc(cache.cls, cache.name, args, kwargs)


def kmem_cache_zalloc(cache: kmem_cache, *args: Any, **kwargs: Any) -> Any:
    """As kmem_cache_alloc (a Python object starts from its constructor's values)."""
    return _alloc(cache.cls, cache.name, args, kwargs)


def kmem_cache_free(cache: kmem_cache, obj: Any) -> None:
    """Free ``obj`` back to ``cache`` (a visible operation)."""
    _free(obj, cache, "kmem_cache_free")


def kmem_cache_destroy(cache: kmem_cache) -> None:
    """Destroy ``cache``; WARN if objects allocated from it are still live."""
    live = any(rec.cache == cache.name for rec in _slab().live.values())
    WARN(live, "kmem_cache_destroy %s: Slab cache still has objects", cache.name)


def kmalloc(cls: type, *args: Any, **kwargs: Any) -> Any:
    """A new ``cls(*args, **kwargs)``, tracked by the allocator."""
    return _alloc(cls, f"kmalloc({cls.__name__})", args, kwargs)


def kzalloc(cls: type, *args: Any, **kwargs: Any) -> Any:
    """As kmalloc (a Python object starts from its constructor's values)."""
    return _alloc(cls, f"kmalloc({cls.__name__})", args, kwargs)


def kfree(obj: Any) -> None:
    """Free ``obj`` (``kfree(NULL)`` -- ``None`` -- does nothing)."""
    if obj is not None:
        _free(obj, None, "kfree")


def get_zeroed_page(cls: type, *args: Any, **kwargs: Any) -> Any:
    """A page-sized object ``cls(*args)`` (e.g. a page table of ``Var`` words)."""
    return _alloc(cls, "page", args, kwargs)


def free_page(obj: Any) -> None:
    """Free a page from ``get_zeroed_page``."""
    if obj is not None:
        _free(obj, None, "free_page")


def set_kasan(enabled: bool) -> bool:
    """CONFIG_KASAN: with it off a freed object keeps its stale contents and
    reading it is silent, as in a production kernel (double frees and leaks are
    still reported).  Per execution inside one, else the default; returns the
    old value."""
    return context.set_switch("kasan", enabled)


# ----------------------------------------------------------------- kmemleak
def kmemleak_not_leak(obj: Any) -> None:
    """Do not report ``obj`` as a leak."""
    _slab().not_leak.add(id(obj))


def kmemleak_report() -> list[Leak]:
    """Objects still allocated (not marked ``kmemleak_not_leak``), oldest first."""
    st = _slab(checking=runtime.current_execution() is None)
    return sorted((rec for key, rec in st.live.items() if key not in st.not_leak),
                  key=lambda rec: rec.serial)


def kmemleak_check() -> None:
    """Raise a ``kmemleak`` finding if any object is still allocated."""
    leaks = kmemleak_report()
    if not leaks:
        return
    details: list[str] = []
    for rec in leaks:
        details += [f"unreferenced object {rec.describe()} ({rec.type_name}, cache {rec.cache}):",
                    f"  comm \"{rec.task}\"", "  backtrace:",
                    *callsite.indented(rec.chain, "    ")]
    raise Finding("kmemleak", f"kmemleak: {len(leaks)} new suspected memory leaks",
                  function=leaks[0].function, details=details)
