"""Linux kernel primitives with the kernel's debug semantics, for model code.

Layer 2 of tdpmmu (see DESIGN.md): thin primitives over the engine's visible
operations, named and behaving like their kernel counterparts, including the
reports of the kernel's debugging options:

- ``bug``: BUG/BUG_ON/WARN/WARN_ON(_ONCE); panic_on_warn is on by default.
- ``spinlock``, ``rwlock``: locks with CONFIG_DEBUG_SPINLOCK checks and the
  ``cond_resched_lock``/``cond_resched_rwlock_*`` yield points.
- ``lockdep``: held locks, lock-order inversions, ``lockdep_assert_held``,
  atomic context.
- ``sched``: ``might_sleep`` (CONFIG_DEBUG_ATOMIC_SLEEP), ``cond_resched``.
- ``rcu``: read-side sections, ``synchronize_rcu``, ``call_rcu``.
- ``atomic``, ``refcount``: ``atomic_t``, cmpxchg, READ_ONCE/WRITE_ONCE over
  engine ``Var`` words; ``refcount_t`` with lib/refcount.c's warnings.
- ``list``: intrusive ``list_head`` with poisoning and CONFIG_DEBUG_LIST.
- ``slab``: allocation with KASAN use-after-free/double-free and kmemleak.
- ``workqueue``: work queues whose workers (``kworker``) are model threads.

Reports name the *model* functions (frames of this package and of the engine
are hidden) and, for BUG/WARN, the kernel file a model module declares in a
module-level ``__kernel_file__``.

Per-execution data that setup and checks also see (the slab registry for
kmemleak, pending RCU callbacks) lives in ``context``'s scope, shared by an
execution's setup, threads and check.
"""

from ..engine import runtime

runtime.hide_frames_of(__file__)

from .atomic import (  # noqa: E402
    ATOMIC_INIT,
    READ_ONCE,
    WRITE_ONCE,
    atomic_add_return,
    atomic_cmpxchg,
    atomic_dec,
    atomic_dec_and_test,
    atomic_dec_return,
    atomic_inc,
    atomic_inc_return,
    atomic_read,
    atomic_set,
    atomic_sub_return,
    atomic_t,
    atomic_xchg,
    cmpxchg,
    xchg,
)
from .bug import (  # noqa: E402
    BUG,
    BUG_ON,
    WARN,
    WARN_ON,
    WARN_ON_ONCE,
    WARN_ONCE,
    panic_on_warn,
    set_panic_on_warn,
)
from .list import (  # noqa: E402
    INIT_LIST_HEAD,
    LIST_HEAD,
    LIST_POISON1,
    LIST_POISON2,
    container_of,
    list_add,
    list_add_rcu,
    list_add_tail,
    list_add_tail_rcu,
    list_del,
    list_del_init,
    list_del_rcu,
    list_empty,
    list_entry,
    list_entry_is_head,
    list_first_entry,
    list_first_entry_or_null,
    list_first_or_null_rcu,
    list_for_each_entry,
    list_for_each_entry_continue,
    list_for_each_entry_rcu,
    list_for_each_entry_safe,
    list_head,
    list_is_singular,
    list_last_entry,
    list_move,
    list_move_tail,
    list_next_entry,
    list_next_or_null_rcu,
)
from .lockdep import (  # noqa: E402
    debug_locks,
    debug_locks_off,
    held_locks,
    in_atomic,
    lockdep_assert_held,
    lockdep_assert_held_read,
    lockdep_assert_held_write,
    lockdep_is_held,
    lockdep_sys_exit,
    preempt_count,
    rcu_read_lock_held,
    set_debug_locks,
)
from .mutex import mutex, mutex_is_locked, mutex_lock, mutex_unlock  # noqa: E402
from .rcu import (  # noqa: E402
    call_rcu,
    kfree_rcu,
    rcu_assign_pointer,
    rcu_barrier,
    rcu_dereference,
    rcu_dereference_check,
    rcu_dereference_protected,
    rcu_head,
    rcu_read_lock,
    rcu_read_unlock,
    synchronize_rcu,
)
from .refcount import (  # noqa: E402
    REFCOUNT_INIT,
    REFCOUNT_SATURATED,
    refcount_add,
    refcount_dec,
    refcount_dec_and_test,
    refcount_inc,
    refcount_inc_not_zero,
    refcount_read,
    refcount_set,
    refcount_sub_and_test,
    refcount_t,
)
from .rwlock import (  # noqa: E402
    DEFINE_RWLOCK,
    cond_resched_rwlock_read,
    cond_resched_rwlock_write,
    read_lock,
    read_trylock,
    read_unlock,
    rwlock_init,
    rwlock_needbreak,
    rwlock_t,
    write_lock,
    write_trylock,
    write_unlock,
)
from .sched import cond_resched, might_sleep  # noqa: E402
from .slab import (  # noqa: E402
    AllocSite,
    Leak,
    free_page,
    get_zeroed_page,
    kfree,
    kmalloc,
    kmem_cache,
    kmem_cache_alloc,
    kmem_cache_create,
    kmem_cache_destroy,
    kmem_cache_free,
    kmem_cache_zalloc,
    kmemleak_check,
    kmemleak_not_leak,
    kmemleak_report,
    kzalloc,
    object_is_freed,
    set_kasan,
)
from .spinlock import (  # noqa: E402
    DEFINE_SPINLOCK,
    assert_spin_locked,
    cond_resched_lock,
    spin_is_locked,
    spin_lock,
    spin_lock_init,
    spin_needbreak,
    spin_trylock,
    spin_unlock,
    spinlock_t,
)
from .srcu import (  # noqa: E402
    srcu_read_lock,
    srcu_read_unlock,
    srcu_struct,
    synchronize_srcu,
    synchronize_srcu_expedited,
)
from .workqueue import (  # noqa: E402
    INIT_WORK,
    WQ_CPU_INTENSIVE,
    WQ_FREEZABLE,
    WQ_HIGHPRI,
    WQ_MEM_RECLAIM,
    WQ_UNBOUND,
    alloc_workqueue,
    destroy_workqueue,
    drain_workqueue,
    flush_workqueue,
    kworker,
    queue_work,
    work_pending,
    work_struct,
    workqueue_struct,
)

__all__ = [
    # bug
    "BUG", "BUG_ON", "WARN", "WARN_ON", "WARN_ONCE", "WARN_ON_ONCE", "panic_on_warn",
    "set_panic_on_warn",
    # spinlock / rwlock
    "DEFINE_SPINLOCK", "assert_spin_locked", "cond_resched_lock", "spin_is_locked",
    "spin_lock", "spin_lock_init", "spin_needbreak", "spin_trylock", "spin_unlock",
    "spinlock_t",
    "DEFINE_RWLOCK", "cond_resched_rwlock_read", "cond_resched_rwlock_write", "read_lock",
    "read_trylock", "read_unlock", "rwlock_init", "rwlock_needbreak", "rwlock_t",
    "write_lock", "write_trylock", "write_unlock",
    # lockdep / sched
    "debug_locks", "debug_locks_off", "held_locks", "in_atomic", "lockdep_assert_held",
    "lockdep_assert_held_read", "lockdep_assert_held_write", "lockdep_is_held",
    "lockdep_sys_exit",
    "preempt_count", "rcu_read_lock_held", "set_debug_locks", "cond_resched", "might_sleep",
    # mutex / srcu
    "mutex", "mutex_is_locked", "mutex_lock", "mutex_unlock", "srcu_read_lock",
    "srcu_read_unlock", "srcu_struct", "synchronize_srcu", "synchronize_srcu_expedited",
    # rcu
    "call_rcu", "kfree_rcu", "rcu_assign_pointer", "rcu_barrier", "rcu_dereference",
    "rcu_dereference_check", "rcu_dereference_protected", "rcu_head", "rcu_read_lock",
    "rcu_read_unlock", "synchronize_rcu",
    # atomic / refcount
    "ATOMIC_INIT", "READ_ONCE", "WRITE_ONCE", "atomic_add_return", "atomic_cmpxchg",
    "atomic_dec", "atomic_dec_and_test", "atomic_dec_return", "atomic_inc",
    "atomic_inc_return", "atomic_read", "atomic_set", "atomic_sub_return", "atomic_t",
    "atomic_xchg", "cmpxchg", "xchg",
    "REFCOUNT_INIT", "REFCOUNT_SATURATED", "refcount_add", "refcount_dec",
    "refcount_dec_and_test", "refcount_inc", "refcount_inc_not_zero", "refcount_read",
    "refcount_set", "refcount_sub_and_test", "refcount_t",
    # list
    "INIT_LIST_HEAD", "LIST_HEAD", "LIST_POISON1", "LIST_POISON2", "container_of",
    "list_add", "list_add_rcu", "list_add_tail", "list_add_tail_rcu", "list_del",
    "list_del_init", "list_del_rcu", "list_empty", "list_entry", "list_entry_is_head",
    "list_first_entry", "list_first_entry_or_null", "list_first_or_null_rcu",
    "list_for_each_entry",
    "list_for_each_entry_continue", "list_for_each_entry_rcu", "list_for_each_entry_safe",
    "list_head", "list_is_singular", "list_last_entry", "list_move", "list_move_tail",
    "list_next_entry", "list_next_or_null_rcu",
    # slab
    "AllocSite", "Leak", "free_page", "get_zeroed_page", "kfree", "kmalloc", "kmem_cache",
    "kmem_cache_alloc", "kmem_cache_create", "kmem_cache_destroy", "kmem_cache_free",
    "kmem_cache_zalloc", "kmemleak_check", "kmemleak_not_leak", "kmemleak_report",
    "kzalloc", "object_is_freed", "set_kasan",
    # workqueue
    "INIT_WORK", "WQ_CPU_INTENSIVE", "WQ_FREEZABLE", "WQ_HIGHPRI", "WQ_MEM_RECLAIM",
    "WQ_UNBOUND", "alloc_workqueue", "destroy_workqueue", "drain_workqueue",
    "flush_workqueue", "kworker", "queue_work", "work_pending", "work_struct",
    "workqueue_struct",
]
