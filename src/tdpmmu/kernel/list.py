"""Intrusive doubly linked lists (include/linux/list.h, lib/list_debug.c).

A struct embeds a ``list_head`` as an attribute and names itself its owner::

    class kvm_mmu_page:
        def __init__(self):
            self.link = list_head(self)

``list_entry``/``container_of`` return the owner.  ``list_del`` poisons the
entry's pointers with ``LIST_POISON1``/``LIST_POISON2`` (plain ints), and
following a poisoned pointer is the kernel's ``general protection fault,
probably for non-canonical address 0xdead000000000100``.  CONFIG_DEBUG_LIST's
checks run on every add and delete; with CONFIG_BUG_ON_DATA_CORRUPTION they
are BUG-kind findings ("list_add corruption. ...", "list_del corruption, ...").

Plain list operations are not visible operations: the lists of the model are
protected by a lock (mmu_lock), so their fields are only touched by the lock
holder.  The ``_rcu`` variants are: writers publish with a visible WRITE of the
``list_head`` whose ``next`` they change, and ``list_for_each_entry_rcu``
reads each ``next`` with a visible READ of its ``list_head``.  Writers of an
RCU list must still be serialised by a lock, as in the kernel.

The walk helpers are generators with the C macros' timing:
``list_for_each_entry`` reads ``pos->next`` *after* the loop body ran, and
``list_for_each_entry_safe`` reads the next entry *before* running the body,
so a body that drops the lock and lets another thread delete entries shows
the kernel's behaviour.  The GPF is raised when the walk advances to the
poisoned pointer (the C code faults on the first dereference, in the body of
the same function).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NoReturn

from ..engine import runtime
from ..engine.access import READ, WRITE
from ..engine.runtime import Finding, visible
from . import callsite, lockdep
from .guard import Guard, check_write
from .slab import describe, object_fields

runtime.hide_frames_of(__file__)

class _Poison(int):
    """A poison value: compares and prints as the kernel's constant, and any
    field access through it (``entry->next->next`` after ``list_del``) is the
    fault the kernel takes on that non-canonical address.  Names starting with
    ``_`` are Python's own (formatting, pickling) and stay the int's."""

    __slots__ = ()

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_"):
            gpf(int(self))
        return int.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        gpf(int(self))

    def __repr__(self) -> str:
        return hex(self)


LIST_POISON1 = _Poison(0xDEAD000000000100)
LIST_POISON2 = _Poison(0xDEAD000000000122)


class list_head:
    """A list node or list head; ``owner`` is the struct that embeds it (None for a head)."""

    __slots__ = ("next", "prev", "owner", "name", "guard", "__weakref__")
    __kasan_ignore__ = frozenset({"owner", "name", "guard"})
    __kasan_embedded_in_owner__ = True

    def __init__(self, owner: Any = None, name: str | None = None) -> None:
        self.next: list_head | int = self
        self.prev: list_head | int = self
        self.owner = owner
        self.name = name
        self.guard: Guard | None = None  # the lock writes must hold (see kernel.guard)

    def __repr__(self) -> str:
        return f"list_head({_px(self)})"


def zeroed_list_head(owner: Any = None) -> list_head:
    """A ``list_head`` member of a zero-filled allocation (``kmem_cache_zalloc``,
    ``__GFP_ZERO``) that nobody initialised: both pointers are NULL until the
    node is added to a list.  Deleting it before then dereferences NULL, as
    in the kernel (with CONFIG_DEBUG_LIST too: ``prev->next``)."""
    node = list_head(owner)
    node.next = 0
    node.prev = 0
    return node


def LIST_HEAD(name: str | None = None) -> list_head:
    """An empty list head."""
    return list_head(None, name)


def INIT_LIST_HEAD(head: list_head) -> None:
    head.next = head
    head.prev = head


# ------------------------------------------------------------------ helpers
def _px(p: Any) -> str:
    """What the kernel's %px would print, made deterministic."""
    if isinstance(p, int):
        return f"{p:#x}"
    owner = object.__getattribute__(p, "owner")
    name = object.__getattribute__(p, "name")
    if owner is None:
        return f"&{name or 'list_head'}"
    member = name
    if member is None:
        member = next((k for k, v in object_fields(owner) if v is p), "list")
    return f"&{describe(owner)}->{member}"


def gpf(address: int) -> NoReturn:
    """Dereferencing ``address`` (a poison value) faults."""
    function = callsite.model_function()
    raise Finding("GPF", f"general protection fault, probably for non-canonical address "
                  f"{address:#x}: 0000 [#1] SMP", function=function,
                  details=[f"CPU: {callsite.cpu()} Comm: {callsite.task_name()}",
                           f"RIP: 0010:{function}", "Call Trace:",
                           *callsite.indented(callsite.call_chain())])


def null_deref(address: int = 0) -> NoReturn:
    """Dereferencing NULL (a zeroed pointer) oopses."""
    function = callsite.model_function()
    raise Finding("BUG", f"BUG: kernel NULL pointer dereference, address: {address:016x}",
                  function=function,
                  details=["#PF: supervisor read access in kernel mode",
                           f"CPU: {callsite.cpu()} Comm: {callsite.task_name()}",
                           f"RIP: 0010:{function}", "Call Trace:",
                           *callsite.indented(callsite.call_chain())])


def _deref(p: Any) -> list_head:
    if isinstance(p, int):
        if p == 0:
            null_deref(p)
        gpf(p)
    return p


def _corruption(function: str, message: str) -> NoReturn:
    """CHECK_DATA_CORRUPTION() with CONFIG_BUG_ON_DATA_CORRUPTION."""
    raise Finding("BUG", message, function=callsite.model_function(),
                  details=[f"kernel BUG at lib/list_debug.c: {function}",
                           f"CPU: {callsite.cpu()} Comm: {callsite.task_name()}",
                           "Call Trace:", *callsite.indented(callsite.call_chain())])


def __list_add_valid(new: list_head, prev: list_head, next: list_head) -> None:
    next_prev = _deref(next).prev
    if next_prev is not prev:
        _corruption("__list_add_valid",
                    f"list_add corruption. next->prev should be prev ({_px(prev)}), "
                    f"but was {_px(next_prev)}. (next={_px(next)}).")
    prev_next = _deref(prev).next
    if prev_next is not next:
        _corruption("__list_add_valid",
                    f"list_add corruption. prev->next should be next ({_px(next)}), "
                    f"but was {_px(prev_next)}. (prev={_px(prev)}).")
    if new is prev or new is next:
        _corruption("__list_add_valid",
                    f"list_add double add: new={_px(new)}, prev={_px(prev)}, next={_px(next)}.")


def __list_del_entry_valid(entry: list_head) -> None:
    prev, next = entry.prev, entry.next
    if next == LIST_POISON1:
        _corruption("__list_del_entry_valid",
                    f"list_del corruption, {_px(entry)}->next is LIST_POISON1 "
                    f"({LIST_POISON1:#x})")
    if prev == LIST_POISON2:
        _corruption("__list_del_entry_valid",
                    f"list_del corruption, {_px(entry)}->prev is LIST_POISON2 "
                    f"({LIST_POISON2:#x})")
    prev_next = _deref(prev).next
    if prev_next is not entry:
        _corruption("__list_del_entry_valid",
                    f"list_del corruption. prev->next should be {_px(entry)}, "
                    f"but was {_px(prev_next)}")
    next_prev = _deref(next).prev
    if next_prev is not entry:
        _corruption("__list_del_entry_valid",
                    f"list_del corruption. next->prev should be {_px(entry)}, "
                    f"but was {_px(next_prev)}")


def __list_add(new: list_head, prev: list_head, next: list_head) -> None:
    __list_add_valid(new, prev, next)
    g = prev.guard or next.guard
    if g is not None:
        check_write(g)
    new.guard = g  # a node on a guarded list is guarded with it
    next.prev = new
    new.next = next
    new.prev = prev
    prev.next = new


def __list_del_entry(entry: list_head) -> None:
    __list_del_entry_valid(entry)
    if entry.guard is not None:
        check_write(entry.guard)
    prev, next = entry.prev, entry.next
    next.prev = prev
    prev.next = next


# --------------------------------------------------------------- operations
def list_add(new: list_head, head: list_head) -> None:
    """Insert ``new`` right after ``head`` (at the front)."""
    __list_add(new, head, _deref(head).next)


def list_add_tail(new: list_head, head: list_head) -> None:
    """Insert ``new`` right before ``head`` (at the back)."""
    __list_add(new, _deref(head).prev, head)


def list_del(entry: list_head) -> None:
    """Unlink ``entry`` and poison its pointers."""
    __list_del_entry(entry)
    entry.next = LIST_POISON1
    entry.prev = LIST_POISON2


def list_del_init(entry: list_head) -> None:
    """Unlink ``entry`` and make it an empty list again."""
    __list_del_entry(entry)
    INIT_LIST_HEAD(entry)


def list_empty(head: list_head) -> bool:
    """``READ_ONCE(head->next) == head`` (a poisoned entry is not empty)."""
    return head.next is head


def list_is_singular(head: list_head) -> bool:
    return not list_empty(head) and head.next is head.prev


def list_move(entry: list_head, head: list_head) -> None:
    __list_del_entry(entry)
    list_add(entry, head)


def list_move_tail(entry: list_head, head: list_head) -> None:
    __list_del_entry(entry)
    list_add_tail(entry, head)


def container_of(ptr: list_head | int) -> Any:
    """The struct embedding ``ptr`` (a poison value faults)."""
    return object.__getattribute__(_deref(ptr), "owner")


def list_entry(ptr: list_head | int) -> Any:
    return container_of(ptr)


def list_first_entry(head: list_head) -> Any:
    """The first entry (the list must not be empty)."""
    return container_of(_deref(head).next)


def list_first_entry_or_null(head: list_head) -> Any:
    pos = _deref(head).next
    return None if pos is head else container_of(pos)


def list_last_entry(head: list_head) -> Any:
    return container_of(_deref(head).prev)


def list_next_entry(pos: Any, member: str) -> Any:
    """The entry after ``pos`` on the list threaded through ``pos.<member>``."""
    return container_of(getattr(pos, member).next)


def list_entry_is_head(pos: Any, head: list_head, member: str) -> bool:
    return getattr(pos, member) is head


# -------------------------------------------------------------------- walks
def list_for_each_entry(head: list_head) -> Iterator[Any]:
    """Entries of ``head``; ``pos->next`` is read after the body ran (like the C macro)."""
    pos = _deref(head.next)
    while pos is not head:
        yield object.__getattribute__(pos, "owner")
        pos = _deref(pos.next)


def list_for_each_entry_safe(head: list_head) -> Iterator[Any]:
    """Entries of ``head``; the next entry is read before the body runs, so the body
    may delete the current one (not the next one, unless under the same lock)."""
    pos = _deref(head.next)
    n = _deref(pos).next
    while pos is not head:
        yield object.__getattribute__(pos, "owner")
        pos = _deref(n)
        n = pos.next


def list_for_each_entry_safe_reverse(head: list_head) -> Iterator[Any]:
    """Entries of ``head`` from the tail; the previous entry is read before the
    body runs, so the body may delete the current one."""
    pos = _deref(head.prev)
    n = _deref(pos).prev
    while pos is not head:
        yield object.__getattribute__(pos, "owner")
        pos = _deref(n)
        n = pos.prev


def list_for_each_entry_continue(pos_entry: Any, head: list_head, member: str
                                 ) -> Iterator[Any]:
    """Entries after ``pos_entry`` (which must still be linked)."""
    pos = _deref(getattr(pos_entry, member).next)
    while pos is not head:
        yield object.__getattribute__(pos, "owner")
        pos = _deref(pos.next)


# ---------------------------------------------------------------- RCU lists
def _rcu_check(cond: Any) -> None:
    if not cond and lockdep.debug_locks() and not lockdep.rcu_read_lock_held():
        raise Finding("lockdep", "WARNING: suspicious RCU usage: RCU-list traversed in "
                      "non-reader section!!", function=callsite.model_function(),
                      details=[f"{callsite.task_name()}: RCU-list traversed in non-reader "
                               "section!!", "Call Trace:",
                               *callsite.indented(callsite.call_chain())])


def list_add_rcu(new: list_head, head: list_head) -> None:
    """Publish ``new`` after ``head`` for RCU readers (a visible WRITE of ``head``)."""
    visible("list_add_rcu", ((head, WRITE),))
    __list_add(new, head, _deref(head).next)


def list_add_tail_rcu(new: list_head, head: list_head) -> None:
    """Publish ``new`` before ``head`` (a visible WRITE of the current last node)."""
    prev = _deref(head.prev)
    visible("list_add_tail_rcu", ((prev, WRITE),))
    __list_add(new, prev, head)


def list_del_rcu(entry: list_head) -> None:
    """Unlink ``entry``; its ``next`` stays valid for readers, ``prev`` is poisoned."""
    prev = entry.prev
    if not isinstance(prev, int):
        visible("list_del_rcu", ((prev, WRITE),))
    __list_del_entry(entry)
    entry.prev = LIST_POISON2


def list_for_each_entry_rcu(head: list_head, cond: Any = False) -> Iterator[Any]:
    """Entries of ``head`` for an RCU reader: each ``next`` is a visible READ.

    Must run in an RCU read-side section unless ``cond`` holds (e.g.
    ``lockdep_is_held(kvm.mmu_lock)``), else lockdep reports "RCU-list traversed
    in non-reader section!!".
    """
    _rcu_check(cond)
    node = head
    while True:
        visible("list_for_each_entry_rcu", ((node, READ),))
        pos = node.next
        if pos is head:
            return
        _deref(pos)
        yield object.__getattribute__(pos, "owner")
        node = pos


def list_first_or_null_rcu(head: list_head) -> Any:
    """The first entry of ``head`` or None: one visible READ of ``head->next``.

    Like the C macro it has no lockdep check of its own; the caller is in a
    read-side section (or holds the update lock), and a node it returns is
    only safe to use while that holds.
    """
    visible("list_first_or_null_rcu", ((head, READ),))
    pos = head.next
    if pos is head:
        return None
    return object.__getattribute__(_deref(pos), "owner")


def list_next_or_null_rcu(head: list_head, ptr: list_head) -> Any:
    """The entry after node ``ptr`` on ``head``, or None at the end: a visible READ of
    ``ptr->next``.  ``ptr`` may have been removed with ``list_del_rcu`` (its ``next``
    still leads on); reading it after its owner was freed is a use-after-free.
    """
    visible("list_next_or_null_rcu", ((ptr, READ),))
    pos = ptr.next
    if pos is head:
        return None
    return object.__getattribute__(_deref(pos), "owner")
