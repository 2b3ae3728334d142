"""Access modes of visible operations and the dependency relation between them.

Every visible operation declares the shared objects it touches and how.  Two
operations of different threads are *dependent* when they touch one object in
conflicting modes; dependence drives both happens-before (DPOR) and sleep sets.

Lock objects use the acquire/release modes.  A release never races with an
acquire of another thread (the acquire is disabled while the lock is held), so
releases only carry happens-before; the races on a lock are between acquires.

``UPDATE`` is a write that commutes with every other ``UPDATE`` of its object:
a read-modify-write whose result the thread does not see and whose effects in
either order give one state (``atomic_inc``, ``set_bit``, clearing a set).  Two
updates are independent; an update conflicts with reads, writes and lock
operations of the object as a write does.  An object's updates must all be of
one commuting kind (incrementing one counter, OR-ing bits into one word,
emptying one set): a counter that one thread increments and another sets is
written, not updated, by the setter.  :func:`update_mode` gives the mode a
declaration should use: ``UPDATE``, or ``WRITE`` when the coarser relation is
chosen (:func:`set_commuting_updates`), kept to test the finer one against.
"""

from __future__ import annotations

READ = 0
WRITE = 1
ACQUIRE = 2  # exclusive acquire (spin_lock, write_lock)
RELEASE = 3  # exclusive release
ACQUIRE_SHARED = 4  # shared acquire (read_lock)
RELEASE_SHARED = 5
UPDATE = 6  # a write commuting with other updates of the object (see the module doc)

MODE_NAMES = ("read", "write", "acquire", "release", "acquire_shared", "release_shared",
              "update")

# CONFLICT[a][b]: operations in modes a and b on the same object are dependent.
_T, _F = True, False
CONFLICT = (
    #  R   W   A   Rel AS  RS  U
    (_F, _T, _T, _T, _T, _T, _T),  # READ (a read of a lock word sees its state)
    (_T, _T, _T, _T, _T, _T, _T),  # WRITE
    (_T, _T, _T, _T, _T, _T, _T),  # ACQUIRE
    (_T, _T, _T, _F, _T, _F, _T),  # RELEASE
    (_T, _T, _T, _T, _F, _F, _T),  # ACQUIRE_SHARED
    (_T, _T, _T, _F, _F, _F, _T),  # RELEASE_SHARED
    (_T, _T, _T, _T, _T, _T, _F),  # UPDATE
)

# [True]: commuting updates are declared UPDATE; [False]: WRITE (the coarser
# relation the engine had before UPDATE, kept to test the finer one against).
_COMMUTING = [True]


def set_commuting_updates(on: bool) -> bool:
    """Declare commuting updates as ``UPDATE`` (True) or ``WRITE``; returns the old choice."""
    old, _COMMUTING[0] = _COMMUTING[0], bool(on)
    return old


def update_mode() -> int:
    """The mode a commuting update declares now: ``UPDATE``, or ``WRITE`` (coarse)."""
    return UPDATE if _COMMUTING[0] else WRITE

Accesses = tuple  # tuple[tuple[object, int], ...]


def dependent(a: Accesses, b: Accesses) -> bool:
    """True when two access lists conflict on some object."""
    if not a or not b:
        return False
    for obj_a, mode_a in a:
        for obj_b, mode_b in b:
            if obj_a is obj_b and CONFLICT[mode_a][mode_b]:
                return True
    return False
