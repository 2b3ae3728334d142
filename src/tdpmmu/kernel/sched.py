"""might_sleep() and cond_resched(): where a thread may be scheduled out.

The model is a kernel built with CONFIG_DEBUG_ATOMIC_SLEEP and without
CONFIG_PREEMPT_RCU (the usual server configuration): holding a spinlock or
rwlock, or being inside an RCU read-side section, is atomic context, and a
function that might sleep there is reported as the kernel does:
``BUG: sleeping function called from invalid context``.
"""

from __future__ import annotations

from ..engine import runtime
from ..engine.runtime import Finding, current_thread
from . import callsite, lockdep

runtime.hide_frames_of(__file__)


def might_sleep() -> None:
    """Report if the running thread is in atomic context (it is about to sleep)."""
    check_sleep(0)


def check_sleep(lock_offset: int) -> None:
    """``___might_sleep()``: ``lock_offset`` locks are expected (cond_resched_lock: 1)."""
    t = current_thread()
    if t is None:
        return
    count = lockdep.atomic_holds(t)
    rcu = lockdep.rcu_read_lock_nesting(t)
    if count <= lock_offset and rcu == 0:
        return
    frame = callsite.caller_frame()
    function = callsite.function_of(frame)
    raise Finding("BUG", "BUG: sleeping function called from invalid context at "
                  f"{callsite.kernel_file(frame)}: {function}", function=function,
                  details=[f"in_atomic(): {int(count > lock_offset)}, irqs_disabled(): 0, "
                           f"non_block: 0, pid: {t.tid}, name: {t.name}",
                           f"preempt_count: {count + rcu}, expected: {lock_offset}",
                           f"RCU nest depth: {rcu}, expected: 0",
                           *lockdep.held_lines(t), "Call Trace:",
                           *callsite.indented(callsite.call_chain())])


def cond_resched() -> int:
    """A scheduling point outside any lock; returns 1 (the model always yields)."""
    check_sleep(0)
    runtime.visible("cond_resched")
    return 1
