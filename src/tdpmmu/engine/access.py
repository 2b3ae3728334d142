"""Access modes of visible operations and the dependency relation between them.

Every visible operation declares the shared objects it touches and how.  Two
operations of different threads are *dependent* when they touch one object in
conflicting modes; dependence drives both happens-before (DPOR) and sleep sets.

Lock objects use the acquire/release modes.  A release never races with an
acquire of another thread (the acquire is disabled while the lock is held), so
releases only carry happens-before; the races on a lock are between acquires.
"""

from __future__ import annotations

READ = 0
WRITE = 1
ACQUIRE = 2  # exclusive acquire (spin_lock, write_lock)
RELEASE = 3  # exclusive release
ACQUIRE_SHARED = 4  # shared acquire (read_lock)
RELEASE_SHARED = 5

MODE_NAMES = ("read", "write", "acquire", "release", "acquire_shared", "release_shared")

# CONFLICT[a][b]: operations in modes a and b on the same object are dependent.
_T, _F = True, False
CONFLICT = (
    #  R   W   A   Rel AS  RS
    (_F, _T, _T, _T, _T, _T),  # READ (a read of a lock word sees its state)
    (_T, _T, _T, _T, _T, _T),  # WRITE
    (_T, _T, _T, _T, _T, _T),  # ACQUIRE
    (_T, _T, _T, _F, _T, _F),  # RELEASE
    (_T, _T, _T, _T, _F, _F),  # ACQUIRE_SHARED
    (_T, _T, _T, _F, _F, _F),  # RELEASE_SHARED
)

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
