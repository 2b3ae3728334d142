"""The runtime: runs model threads as greenlets under a strategy's choices.

A model thread runs Python code freely between *visible operations*.  Each
visible operation is announced with :func:`visible` before it takes effect: the
thread records what it is about to do (label, accesses, enabling condition) and
hands control to the scheduler, which picks the thread whose announced
operation runs next.  When a thread is picked it returns from ``visible`` and
performs the effect, then runs until its next announcement.  So a *step* is one
visible operation plus the invisible code after it, and steps are atomic.

The scheduler logic runs in whichever greenlet is current: a greenlet switch
happens only when the strategy picks a thread other than the running one, which
keeps the common "same thread again" case at the cost of a function call.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from greenlet import GreenletExit, getcurrent, greenlet

from .access import Accesses


class Finding(Exception):  # noqa: N818 - a finding is what the tool reports, not an error of it
    """A property violation raised inside a model thread (or by a check).

    ``kind`` classifies it (``"BUG"``, ``"WARN"``, ``"KASAN"``, ``"deadlock"``...),
    ``message`` is the report's first line, ``function`` the model function
    that failed (when known) and ``details`` further report lines.
    """

    def __init__(self, kind: str, message: str, function: str | None = None,
                 details: list[str] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.function = function
        self.details = details or []


class EngineError(Exception):
    """The exploration itself cannot go on (a nondeterministic model, a bad schedule)."""


@dataclass
class SoftFinding:
    """A broken property that does not stop the execution (e.g. a non-fatal WARN)."""

    kind: str
    message: str
    step: int
    thread: str | None
    function: str | None = None
    details: list[str] = field(default_factory=list)


class _Stop(BaseException):
    """Unwinds a model thread when its execution ends early."""


_ENGINE_DIR = __file__.rsplit("/", 1)[0]


def model_stack(frame: Any, skip_prefixes: tuple[str, ...] = ()) -> list[str]:
    """Function names of a model thread's frames, outermost first.

    Engine frames are left out; so are frames whose file starts with one of
    ``skip_prefixes`` (a library of primitives can hide its own internals).
    """
    return code_names(frame_codes(frame), skip_prefixes)


def frame_codes(frame: Any) -> tuple[Any, ...]:
    """The code objects of ``frame`` and its callers, innermost first: a stack
    captured for a later report costs a walk, and the names are made only if
    the report is printed (see :func:`code_names`)."""
    codes = []
    while frame is not None:
        codes.append(frame.f_code)
        frame = frame.f_back
    return tuple(codes)


# Per tuple of hidden prefixes: code object -> is it hidden?  Code objects live
# as long as their functions, so the cache stays as small as the model.
_HIDDEN_CODE: dict[tuple[str, ...], dict[Any, bool]] = {}


def code_names(codes: tuple[Any, ...], skip_prefixes: tuple[str, ...] = ()) -> list[str]:
    """Names of the model frames among ``codes`` (innermost first), outermost first."""
    hidden = _HIDDEN_CODE.get(skip_prefixes)
    if hidden is None:
        hidden = _HIDDEN_CODE[skip_prefixes] = {}
    names = []
    for code in codes:
        h = hidden.get(code)
        if h is None:
            fname = code.co_filename
            h = hidden[code] = fname.startswith(_ENGINE_DIR) or fname.startswith(skip_prefixes)
        if not h:
            names.append(code.co_name)
    names.reverse()
    return names


# Files whose frames are hidden from model stacks (primitives register themselves).
HIDDEN_FRAME_PREFIXES: list[str] = []


def hide_frames_of(module_file: str) -> None:
    """Hide the frames of the package containing ``module_file`` from stacks."""
    prefix = module_file.rsplit("/", 1)[0]
    if prefix not in HIDDEN_FRAME_PREFIXES:
        HIDDEN_FRAME_PREFIXES.append(prefix)
        _HIDDEN_CODE.clear()


class ModelThread:
    """One model thread of an execution."""

    __slots__ = ("tid", "name", "fn", "glet", "finished", "label", "acc", "enabled",
                 "waits_for", "seq", "local", "idle")

    def __init__(self, tid: int, name: str, fn: Callable[[Any], Any]) -> None:
        self.tid = tid
        self.name = name
        self.fn = fn
        self.glet: greenlet | None = None
        self.finished = False
        self.label = "start"
        self.acc: Accesses = ()
        self.enabled: Callable[[], bool] | None = None
        self.waits_for: str | None = None
        self.local: dict[str, Any] = {}  # thread-local storage for primitives (lockdep...)
        # Set by a primitive while the thread waits for work that may never come
        # (an idle worker): an execution may end with it waiting, no deadlock.
        self.idle = False

    def is_enabled(self) -> bool:
        return not self.finished and (self.enabled is None or self.enabled())

    def stack(self) -> list[str]:
        g = self.glet
        if g is None:
            frame = None
        elif g is getcurrent():
            frame = sys._getframe(1)
        else:
            frame = g.gr_frame
        return model_stack(frame, tuple(HIDDEN_FRAME_PREFIXES))

    def __repr__(self) -> str:
        return f"<ModelThread {self.tid}:{self.name}>"


@dataclass
class Step:
    """One scheduled step of a traced execution."""

    index: int
    thread: str
    tid: int
    label: str
    stack: list[str]
    choices: list[int] = field(default_factory=list)
    observed: Any = None
    marks: list[str] = field(default_factory=list)


class _Pool(threading.local):
    """Idle worker greenlets of this OS thread (greenlets cannot cross threads)."""

    def __init__(self) -> None:
        self.idle: list[greenlet] = []


_POOL = _Pool()
POOL_SIZE = 64


def _worker(job: tuple[Execution, ModelThread]) -> None:
    """Runs model threads one after another: creating a greenlet costs about as
    much as ten visible operations, and every execution needs one per thread."""
    me = getcurrent()
    while True:
        ex, t = job
        res = ex._thread_body(t)
        t.glet = None  # the thread's body is done; its greenlet can take another
        ex = t = None  # type: ignore[assignment]
        idle = _POOL.idle
        if len(idle) < POOL_SIZE:
            idle.append(me)
        job = me.parent.switch(res)


def _worker_greenlet(main: greenlet) -> greenlet:
    idle = _POOL.idle
    while idle:
        g = idle.pop()
        if not g.dead:
            g.parent = main
            return g
    return greenlet(_worker, parent=main)


class Execution:
    """State of one execution: its threads, the decisions taken, its outcome."""

    def __init__(self, state: Any, threads: list[tuple[str, Callable[[Any], Any]]],
                 strategy: Any, max_steps: int, invariant: Callable[[Any], None] | None,
                 trace: bool = False, observe: Callable[[Any], Any] | None = None) -> None:
        self.state = state
        self.threads = [ModelThread(i, n, f) for i, (n, f) in enumerate(threads)]
        self.strategy = strategy
        self.max_steps = max_steps
        self.invariant = invariant
        self.tracing = trace
        self.observe = observe
        self.decisions: list[int] = []  # encoded: tid*2 for schedule, value*2+1 for choice
        self.nsteps = 0
        self.preemptions = 0
        self.last: ModelThread | None = None
        self.running: ModelThread | None = None
        self.finding: Finding | None = None
        self.finding_thread: str | None = None
        self.finding_step: int | None = None
        self.finding_stacks: list[str] = []
        self.soft: list[SoftFinding] = []
        self.steps: list[Step] = []
        self.stopped = False
        self.priming = True
        self.sleep_blocked = False
        self.step_bound_hit = False
        self.error: EngineError | None = None
        self.main: greenlet | None = None
        self.local: dict[str, Any] = {}  # execution-local storage for primitives
        self.step_acc: Accesses = ()  # accesses of the step that ran last
        self.inv_watch: dict[int, Any] | None = None  # what the invariant last read
        # Snapshots (see .snapshots): called before the decision ``snap.next_at``.
        self.snap: Any = None
        self.resumed_at = 0  # the decision this process took the execution over at
        self.skipped_steps = 0  # steps run before that, by other processes
        # The states after the first ``checked_upto`` decisions passed the
        # invariant in an earlier execution (a replayed prefix): not checked again.
        self.checked_upto = 0

    # ----------------------------------------------------------------- running
    def run(self) -> None:
        global _current
        prev = _current
        _current = self
        self.main = main = getcurrent()
        try:
            for t in self.threads:
                t.glet = g = _worker_greenlet(main)
                self.running = t
                g.switch((self, t))
                if self.stopped:
                    break
            self.priming = False
            nxt = None if self.stopped else self.decide()
            while nxt is not None:
                self.running = nxt
                nxt = nxt.glet.switch()
                if self.stopped:
                    break
        finally:
            self._kill_threads()
            if self.observe is not None and self.steps and self.steps[-1].observed is None:
                self.steps[-1].observed = self.observe(self.state)
            _current = prev

    def _thread_body(self, t: ModelThread) -> ModelThread | None:
        try:
            t.fn(self.state)
        except (_Stop, GreenletExit):
            return None
        except Finding as f:
            self.fail(f, t)
            return None
        except EngineError as exc:
            self.error = exc
            self.stopped = True
            return None
        except Exception as exc:  # a bug in the model thread is a finding, not a crash
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
            frames = traceback.extract_tb(exc.__traceback__)
            func = frames[-1].name if frames else None
            self.fail(Finding("exception", f"{type(exc).__name__}: {exc}", func,
                              [line.rstrip() for line in tb]), t)
            return None
        t.finished = True
        t.label = "exit"
        if self.priming or self.stopped:
            return None
        return self.decide()

    def _kill_threads(self) -> None:
        self.stopped = True
        for t in self.threads:
            g = t.glet
            if g is not None and not g.dead and g:
                with contextlib.suppress(_Stop):
                    g.throw(_Stop)  # the worker ends the body and sets t.glet = None

    def fail(self, finding: Finding, t: ModelThread | None) -> None:
        """Record the execution's finding and stop it."""
        if self.finding is None:
            self.finding = finding
            self.finding_thread = t.name if t is not None else None
            self.finding_step = self.nsteps
        self.stopped = True

    # ------------------------------------------------------------- scheduling
    def decide(self) -> ModelThread | None:
        """Choose the thread that takes the next step (None: the execution ends)."""
        if self.stopped:
            return None
        if self.observe is not None and self.steps:
            self.steps[-1].observed = self.observe(self.state)
        if self.invariant is not None and self.nsteps \
                and len(self.decisions) > self.checked_upto:
            watch = self.inv_watch
            if watch is None or _touches(self.step_acc, watch):
                self._check_invariant()
        enabled = [t for t in self.threads
                   if not t.finished and (t.enabled is None or t.enabled())]
        if not enabled:
            live = [t for t in self.threads if not t.finished and not t.idle]
            if live:
                self._deadlock(live)
            else:
                self.stopped = True
            return None
        if self.nsteps >= self.max_steps:
            self.step_bound_hit = True
            self.fail(Finding("livelock", f"step bound reached: {self.max_steps} steps "
                              "without the threads finishing",
                              details=self._where_threads_are()), None)
            return None
        snap = self.snap
        if snap is not None and self.strategy.pos >= snap.next_at:
            snap.take(self, enabled)
        t = self.strategy.pick(self, enabled)
        if t is not None and self.last is not None and t is not self.last \
                and self.last in enabled:
            self.preemptions += 1
        if t is None:  # the strategy cut this execution (sleep-set blocked)
            self.sleep_blocked = True
            self.stopped = True
            return None
        self.decisions.append(t.tid * 2)
        self.last = t
        self.step_acc = t.acc
        if self.tracing:
            self.steps.append(Step(self.nsteps, t.name, t.tid, t.label, t.stack()))
        self.nsteps += 1
        return t

    def _check_invariant(self) -> None:
        """Run the per-step invariant and keep what it says it read.

        An invariant may return the access objects its outcome depends on: it
        is then not run again until a step declares an access to one of them.
        That is sound under the model's rule that shared memory changes only
        in the step of a visible operation on it, or under a lock whose
        acquire and release are visible operations: an invariant that reads a
        lock-protected structure returns the lock (and skips the structure
        while the lock is held).
        """
        try:
            watch = self.invariant(self.state)
        except Finding as f:
            self.soft_report(f)
            watch = None
        self.inv_watch = None if watch is None else {id(o): o for o in watch}

    def choose(self, n: int) -> int:
        """Data nondeterminism: a value in ``range(n)`` chosen by the strategy."""
        if n <= 1:
            return 0
        v = self.strategy.choose(self, n)
        self.decisions.append(v * 2 + 1)
        if self.tracing and self.steps:
            self.steps[-1].choices.append(v)
        return v

    def soft_report(self, f: Finding) -> None:
        t = self.running
        self.soft.append(SoftFinding(f.kind, f.message, max(self.nsteps - 1, 0),
                                     t.name if t is not None else None, f.function,
                                     list(f.details)))

    def _where_threads_are(self) -> list[str]:
        lines = []
        for t in self.threads:
            if t.finished:
                lines.append(f"  {t.name}: finished")
                continue
            where = " -> ".join(t.stack()) or "?"
            wait = f", waiting for {t.waits_for}" if t.waits_for and not t.is_enabled() else ""
            lines.append(f"  {t.name}: at {t.label} in {where}{wait}")
        return lines

    def _deadlock(self, live: list[ModelThread]) -> None:
        names = ", ".join(t.name for t in live)
        self.fail(Finding("deadlock", f"deadlock: every unfinished thread is blocked ({names})",
                          details=self._where_threads_are()), None)


def _touches(acc: Accesses, watch: dict[int, Any]) -> bool:
    for obj, _mode in acc:  # noqa: SIM110 - a loop is cheaper than any() on 1-2 items
        if id(obj) in watch:
            return True
    return False


_current: Execution | None = None


_serial = [0]


def new_serial() -> int:
    """A creation number for a shared object.

    Numbers restart before each execution's ``setup()``, so the objects that
    setup and a replayed prefix create get the same numbers in every
    execution: a strategy that remembers an access across executions (optimal
    DPOR's wakeup trees) recognises the object by it.
    """
    n = _serial[0]
    _serial[0] = n + 1
    return n


# Visible operations outside any execution (a scenario's setup) are not
# scheduled, so nothing else bounds them: a loop of them is a livelock.
UNOBSERVED_BOUND = 50_000
_unobserved = [0]


def reset_serials() -> None:
    _serial[0] = 0
    _unobserved[0] = 0


def unobserved_operations() -> int:
    """Visible operations run outside any execution since the last reset."""
    return _unobserved[0]


def serials_issued() -> int:
    return _serial[0]


def current_execution() -> Execution | None:
    """The execution running now, or None outside any execution (setup, check)."""
    return _current


def current_thread() -> ModelThread | None:
    """The model thread running now, or None outside model threads."""
    ex = _current
    if ex is None or ex.main is None or getcurrent() is ex.main:
        return None
    return ex.running


def visible(label: str, accesses: Accesses = (), enabled: Callable[[], bool] | None = None,
            waits_for: str | None = None) -> None:
    """Announce a visible operation and let the scheduler choose who runs next.

    ``accesses`` lists ``(object, mode)`` pairs (modes from :mod:`.access`);
    ``enabled``, when given, says whether the operation can take effect now (a
    blocked lock acquire, a wait) and must depend only on the listed objects.
    Outside a model thread this does nothing: setup and checks run unobserved.
    """
    ex = _current
    if ex is None:
        _unobserved[0] += 1
        if _unobserved[0] > UNOBSERVED_BOUND:
            raise Finding("livelock", f"step bound reached before the threads started: "
                          f"{UNOBSERVED_BOUND} visible operations, the last {label}")
        return
    t = ex.running
    if t is None or getcurrent() is ex.main:
        if enabled is not None and not enabled():
            raise Finding("deadlock", f"{label}: would block outside any model thread")
        return
    if ex.stopped:
        raise _Stop()
    t.label = label
    t.acc = accesses
    t.enabled = enabled
    t.waits_for = waits_for
    if ex.priming:
        ex.main.switch()
    else:
        nxt = ex.decide()
        if nxt is None:
            ex.main.switch()
        elif nxt is not t:
            ex.running = nxt
            nxt.glet.switch()
        ex.running = t
    if ex.stopped:
        raise _Stop()
    t.enabled = None
    t.waits_for = None


def choose(n: int) -> int:
    """A nondeterministic value in ``range(n)``, explored by the strategy."""
    ex = _current
    if ex is None or current_thread() is None:
        return 0
    return ex.choose(n)


def report(kind: str, message: str, function: str | None = None,
           details: list[str] | None = None) -> None:
    """Record a broken property without stopping the execution.

    In the check after an execution it is recorded for that execution (at its
    last step); anywhere else outside an execution it is raised.
    """
    ex = _current
    if ex is not None:
        ex.soft_report(Finding(kind, message, function, details))
    elif _checking is not None:
        _checking.soft.append(SoftFinding(kind, message, _checking.nsteps, None, function,
                                          list(details or [])))
    else:
        raise Finding(kind, message, function, details)


_checking: Execution | None = None


class checking:  # noqa: N801 - a context manager named for what it marks
    """``with checking(ex):`` marks the check that runs after execution ``ex``."""

    def __init__(self, ex: Execution) -> None:
        self.ex = ex

    def __enter__(self) -> Execution:
        global _checking
        self.prev, _checking = _checking, self.ex
        return self.ex

    def __exit__(self, *exc: object) -> None:
        global _checking
        _checking = self.prev


def execution_local() -> dict[str, Any]:
    """Storage that lives as long as the current execution (a fresh dict outside)."""
    ex = _current
    return ex.local if ex is not None else {}


def mark(text: str) -> None:
    """Attach a note to the current step of a traced execution (for reports)."""
    ex = _current
    if ex is not None and ex.tracing and ex.steps:
        ex.steps[-1].marks.append(text)
