"""Small models shared by the engine tests: a test lock and a random-program interpreter.

The real kernel locks live in ``tdpmmu.kernel``; these tests use their own lock,
written with nothing but the engine's public API, so that they test the engine
alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tdpmmu.engine import (
    ACQUIRE,
    ACQUIRE_SHARED,
    READ,
    RELEASE,
    RELEASE_SHARED,
    WRITE,
    Var,
    choose,
    cpu_relax,
    current_thread,
    explore,
    visible,
)
from tdpmmu.engine.runtime import new_serial
from tdpmmu.engine.strategies import DfsStrategy, DporStrategy, OptimalDporStrategy


class TLock:
    """A test lock: exclusive (``lock``/``unlock``) and shared (``rlock``/``runlock``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.owner: str | None = None
        self.readers = 0
        self._serial = new_serial()  # recognised across executions by optimal DPOR


def lock(lk: TLock) -> None:
    visible(f"lock {lk.name}", ((lk, ACQUIRE),),
            enabled=lambda: lk.owner is None and lk.readers == 0,
            waits_for=f"lock {lk.name}")
    lk.owner = current_thread().name


def unlock(lk: TLock) -> None:
    visible(f"unlock {lk.name}", ((lk, RELEASE),))
    assert lk.owner == current_thread().name, "unlock of a lock not held"
    lk.owner = None


def rlock(lk: TLock) -> None:
    visible(f"rlock {lk.name}", ((lk, ACQUIRE_SHARED),), enabled=lambda: lk.owner is None,
            waits_for=f"lock {lk.name} (shared)")
    lk.readers += 1


def runlock(lk: TLock) -> None:
    visible(f"runlock {lk.name}", ((lk, RELEASE_SHARED),))
    lk.readers -= 1


def trylock(lk: TLock) -> bool:
    """spin_trylock: takes the lock when free, never blocks.

    Not an ACQUIRE: the engine's ACQUIRE is an operation disabled while the
    lock is held (so it cannot race with the holder's release); a trylock
    runs either way, and reads and writes the lock word: WRITE.
    """
    visible(f"trylock {lk.name}", ((lk, WRITE),))
    if lk.owner is None and lk.readers == 0:
        lk.owner = current_thread().name
        return True
    return False


def peek(lk: TLock) -> bool:
    """spin_is_locked: a READ of the lock word."""
    visible(f"peek {lk.name}", ((lk, READ),))
    return lk.owner is not None


def cmpxchg(v: Var, old: Any, new: Any) -> Any:
    """Atomic compare-and-exchange on a Var: one visible operation, WRITE mode."""
    visible(f"cmpxchg {v.name or 'var'}", ((v, WRITE),))
    cur = v.value
    if cur == old:
        v.value = new
        v.version += 1
    return cur


# --------------------------------------------------------------- random programs
#
# A program is a tuple of threads; a thread is a tuple of operations:
#   ("load", var, reg)              reg = vars[var].load()
#   ("store", var, ("c", k))        vars[var].store(k)
#   ("store", var, ("r", reg, k))   vars[var].store(regs[reg] + k)
#   ("lock", j) / ("unlock", j)     exclusive lock j (well nested, always released)
#   ("rlock", j) / ("runlock", j)   shared lock j
#   ("choose", reg)                 reg = choose(2)
#   ("cas", var, old, new, reg)     reg = cmpxchg(vars[var], old, new)
#   ("trylock", j, reg) / ("untry", j)  reg = trylock(j); unlock j at "untry" if taken
#   ("peek", j, reg)                reg = spin_is_locked(j): a READ of the lock
#   ("xfer", a, b, reg)             one operation reading var a and writing var b (a may be b)
#   ("nop",)                        a visible operation touching nothing
#   ("wait", var, k)                block until vars[var] == k (enabled predicate, READ)
#   ("spin", var, k)                while vars[var].load() != k: cpu_relax()

NREGS = 2


@dataclass
class PState:
    vars: list[Var]
    locks: list[TLock]
    regs: list[list[int]] = field(default_factory=list)

    def snapshot(self) -> tuple:
        return (tuple(v.value for v in self.vars), tuple(tuple(r) for r in self.regs))


def _run_ops(s: PState, me: int, ops: tuple) -> None:
    regs = s.regs[me]
    tried: list[bool] = []  # outcome of each trylock not yet matched by its "untry"
    for op in ops:
        kind = op[0]
        if kind == "load":
            regs[op[2]] = s.vars[op[1]].load()
        elif kind == "store":
            src = op[2]
            s.vars[op[1]].store(src[1] if src[0] == "c" else regs[src[1]] + src[2])
        elif kind == "lock":
            lock(s.locks[op[1]])
        elif kind == "unlock":
            unlock(s.locks[op[1]])
        elif kind == "rlock":
            rlock(s.locks[op[1]])
        elif kind == "runlock":
            runlock(s.locks[op[1]])
        elif kind == "trylock":
            regs[op[2]] = int(trylock(s.locks[op[1]]))
            tried.append(bool(regs[op[2]]))
        elif kind == "untry":
            if tried.pop():
                unlock(s.locks[op[1]])
        elif kind == "peek":
            regs[op[2]] = int(peek(s.locks[op[1]]))
        elif kind == "xfer":
            a, b = s.vars[op[1]], s.vars[op[2]]
            visible(f"xfer {a.name}->{b.name}", ((a, READ), (b, WRITE)))
            regs[op[3]] = a.value
            b.value = a.value + 1
            b.version += 1
        elif kind == "add":
            s.vars[op[1]].add(op[2])
        elif kind == "nop":
            visible("nop")
        elif kind == "choose":
            regs[op[1]] = choose(2)
        elif kind == "cas":
            regs[op[4]] = cmpxchg(s.vars[op[1]], op[2], op[3])
        elif kind == "wait":
            v, k = s.vars[op[1]], op[2]
            visible(f"wait {v.name}=={k}", ((v, READ),), enabled=lambda v=v, k=k: v.value == k,
                    waits_for=f"{v.name} == {k}")
        elif kind == "spin":
            v = s.vars[op[1]]
            while v.load() != op[2]:
                cpu_relax()
        else:  # pragma: no cover - generator bug
            raise ValueError(op)


def build(program: tuple, nvars: int, nlocks: int
          ) -> tuple[Callable[[], PState], list[tuple[str, Callable[[PState], None]]]]:
    """The setup function and thread list that run ``program``."""
    def setup() -> PState:
        return PState([Var(0, f"v{i}") for i in range(nvars)],
                      [TLock(f"L{j}") for j in range(nlocks)],
                      [[0] * NREGS for _ in program])

    def thread(me: int, ops: tuple) -> Callable[[PState], None]:
        return lambda s: _run_ops(s, me, ops)

    return setup, [(f"T{i}", thread(i, ops)) for i, ops in enumerate(program)]


@dataclass
class Outcomes:
    """Everything an exhaustive search of a program can observe."""

    finals: set = field(default_factory=set)  # ("ok" | "deadlock", snapshot) of executions
    kinds: set = field(default_factory=set)  # violation kinds found
    executions: int = 0
    complete: bool = False


def outcomes(program: tuple, nvars: int, nlocks: int, strategy: str,
             max_executions: int = 200_000, kernel: bool = False,
             lockdep: bool = True) -> Outcomes:
    """Explore ``program`` to the end, going on past violations.

    ``explore`` stops at the first violation; handing it the same strategy
    object again resumes the search where it stopped, so the whole space is
    covered and the final state of each deadlocked execution (the last
    ``observed`` of its trace) is collected too.
    """
    if kernel:
        setup, threads = build_kernel(program, nvars, nlocks, lockdep)
    else:
        setup, threads = build(program, nvars, nlocks)
    strat = {"dfs": DfsStrategy, "dpor": OptimalDporStrategy,
             "source-dpor": DporStrategy}[strategy]()
    out = Outcomes()

    def check(s: PState) -> None:
        out.finals.add(("ok", s.snapshot()))

    while True:
        left = max_executions - out.executions
        r = explore(setup, threads, strategy=strat, check=check, minimize=False,
                    observe=PState.snapshot, max_executions=left)
        out.executions += r.executions
        v = r.violation
        if v is None:
            out.complete = r.complete
            return out
        out.kinds.add(v.kind)
        if v.kind == "deadlock":
            # A deadlocked execution is maximal: its state is a final state.  One
            # stopped by a finding (lockdep...) is not, and how far the threads
            # independent of the finding got differs between equivalent runs.
            out.finals.add((v.kind, v.trace[-1].observed if v.trace else None))


# ------------------------------------------------- the same programs, kernel locks
#
# Lock j is a tdpmmu.kernel spinlock_t when j is even, an rwlock_t when odd:
#   lock     spin_lock / write_lock          rlock   spin_lock / read_lock
#   trylock  spin_trylock / write_trylock    peek    spin_is_locked / read_trylock+unlock


def _kernel_ops(kernel: Any, s: PState, me: int, ops: tuple) -> None:
    regs = s.regs[me]
    tried: list[bool] = []
    held: dict[int, str] = {}  # lock -> how it is held ("spin", "read", "write")
    for op in ops:
        kind = op[0]
        if kind in ("lock", "rlock", "trylock", "unlock", "runlock", "untry", "peek"):
            lk = s.locks[op[1]]
            spin = isinstance(lk, kernel.spinlock_t)
        if kind in ("lock", "rlock"):
            if spin:
                kernel.spin_lock(lk)
                held[op[1]] = "spin"
            elif kind == "lock":
                kernel.write_lock(lk)
                held[op[1]] = "write"
            else:
                kernel.read_lock(lk)
                held[op[1]] = "read"
        elif kind in ("unlock", "runlock") or (kind == "untry" and tried.pop()):
            how = held.pop(op[1])
            if how == "spin":
                kernel.spin_unlock(lk)
            elif how == "write":
                kernel.write_unlock(lk)
            else:
                kernel.read_unlock(lk)
        elif kind == "trylock":
            ok = kernel.spin_trylock(lk) if spin else kernel.write_trylock(lk)
            regs[op[2]] = int(ok)
            tried.append(bool(ok))
            if ok:
                held[op[1]] = "spin" if spin else "write"
        elif kind == "peek":
            if spin:
                regs[op[2]] = int(kernel.spin_is_locked(lk))
            else:
                got = kernel.read_trylock(lk)
                regs[op[2]] = int(not got)
                if got:
                    kernel.read_unlock(lk)
        elif kind != "untry":
            _run_ops(s, me, (op,))


def build_kernel(program: tuple, nvars: int, nlocks: int, lockdep: bool = True
                 ) -> tuple[Callable[[], PState], list[tuple[str, Callable[[PState], None]]]]:
    """Like :func:`build`, with the locks of ``tdpmmu.kernel`` (lockdep on or off)."""
    import tdpmmu.kernel as kernel

    def setup() -> PState:
        return PState([Var(0, f"v{i}") for i in range(nvars)],
                      [kernel.spinlock_t(f"S{j}") if j % 2 == 0 else kernel.rwlock_t(f"RW{j}")
                       for j in range(nlocks)],
                      [[0] * NREGS for _ in program])

    def thread(me: int, ops: tuple) -> Callable[[PState], None]:
        def run(s: PState) -> None:
            if not lockdep:
                kernel.debug_locks_off()  # for this execution only
            _kernel_ops(kernel, s, me, ops)
        return run

    return setup, [(f"T{i}", thread(i, ops)) for i, ops in enumerate(program)]


# ------------------------------------------------------- classic DPOR benchmarks


class Classic:
    """A named program: setup, threads, and the final-state snapshot of its state."""

    def __init__(self, name: str, setup: Callable[[], Any], threads: list,
                 snapshot: Callable[[Any], tuple]) -> None:
        self.name, self.setup, self.threads, self.snapshot = name, setup, threads, snapshot


def lastzero(n: int) -> Classic:
    """lastzero(n) (Abdulla et al., POPL 2014): thread 0 scans a[n..0] for the last
    zero while thread i sets a[i] = a[i-1] + 1."""
    class S:
        def __init__(self) -> None:
            self.a = [Var(0, f"a{i}") for i in range(n + 1)]
            self.found = -1

    def scan(s: S) -> None:
        i = n
        while i >= 0 and s.a[i].load() != 0:
            i -= 1
        s.found = i

    def bump(i: int) -> Callable[[S], None]:
        def t(s: S) -> None:
            s.a[i].store(s.a[i - 1].load() + 1)
        return t

    return Classic(f"lastzero({n})", S, [("scan", scan)] + [(f"w{i}", bump(i))
                                                           for i in range(1, n + 1)],
                   lambda s: (tuple(v.value for v in s.a), s.found))


def indexer(nthreads: int, size: int, msgs: int) -> Classic:
    """Indexer (Flanagan & Godefroid, POPL 2005): threads insert into a hash table
    with linear probing by cmpxchg; a small table makes them collide."""
    class S:
        def __init__(self) -> None:
            self.table = [Var(0, f"t{i}") for i in range(size)]

    def insert(tid: int) -> Callable[[S], None]:
        def t(s: S) -> None:
            for m in range(msgs):
                w = (m + 1) * 11 + tid
                h = w * 7 % size
                while cmpxchg(s.table[h], 0, w) != 0:
                    h = (h + 1) % size
        return t

    return Classic(f"indexer({nthreads}, table {size})", S,
                   [(f"T{t}", insert(t)) for t in range(nthreads)],
                   lambda s: tuple(v.value for v in s.table))


def locked_counter(nthreads: int, incs: int) -> Classic:
    """Threads increment a counter under a lock, ``incs`` times each."""
    class S:
        def __init__(self) -> None:
            self.count = Var(0, "count")
            self.lock = TLock("L")
            self.order: list[str] = []

    def inc(name: str) -> Callable[[S], None]:
        def t(s: S) -> None:
            for _ in range(incs):
                lock(s.lock)
                s.order.append(name)
                s.count.store(s.count.load() + 1)
                unlock(s.lock)
        return t

    return Classic(f"locked counter ({nthreads} x {incs})", S,
                   [(f"T{i}", inc(f"T{i}")) for i in range(nthreads)],
                   lambda s: (s.count.value, tuple(s.order)))


def two_locks(nthreads: int) -> Classic:
    """Threads update two counters, each under its own lock, in both nestings."""
    class S:
        def __init__(self) -> None:
            self.x, self.y = Var(0, "x"), Var(0, "y")
            self.lx, self.ly = TLock("LX"), TLock("LY")

    def t(i: int) -> Callable[[S], None]:
        def run(s: S) -> None:
            lock(s.lx)
            s.x.store(s.x.load() + i + 1)
            unlock(s.lx)
            lock(s.ly)
            s.y.store(s.y.load() * 2 + i)
            unlock(s.ly)
        return run

    return Classic(f"two locks ({nthreads} threads)", S,
                   [(f"T{i}", t(i)) for i in range(nthreads)],
                   lambda s: (s.x.value, s.y.value))
