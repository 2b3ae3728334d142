"""Snapshots: reach a backtrack point without re-running the prefix (``os.fork``).

A tree search re-executes, for every execution, the decisions before its
branch point from ``setup()``.  With snapshots, the process running an
execution forks at chosen decision points; the parent stops there and waits,
holding the whole execution state (model objects, greenlet stacks, the
strategy's per-execution bookkeeping) copy-on-write: a *snapshot*.  After the
execution the strategy picks the next branch point ``b`` as usual; the deepest
snapshot at a decision ``p <= b`` is sent the search state (the tree's nodes
and counters, plain data) and forks a new explorer process, which re-runs only
decisions ``p..b-1`` and goes on from there; the old explorer exits.  So the
search is the serial one, decision for decision: the same executions, tokens,
findings and counts, with the prefix before ``p`` not run again.

Processes: the caller forks one search process and waits for its result.
Live snapshots are always the ancestors of the running explorer, one per
decision point, in depth order (a snapshot is the parent side of a fork, the
explorer its child).  Snapshots deeper than the next branch point no longer lie
on the search path and are told to exit.  Where they are taken (see
:meth:`Forker.start`): at decision 0 (after ``setup()`` and priming), at each
execution's branch point, and at exponentially spaced decisions after it
(``b+1, b+2, b+4...``), at most :data:`MAX_SNAPSHOTS` at a time: an execution
forks O(log depth) times and the live processes stay bounded by the depth.

Cost: a fork copies the page tables, and the child then copies every page it
writes (CPython's reference counts write to each object read).  On the
two-core VM this was written on, a fork and exit of a 20 MB process cost about
2 ms of CPU (about 100 us per MB), and the KVM checks' executions are about
80 steps of 25 us with 10-15 new ones each: there the forks (about 4 per
execution) cost more than the re-run prefixes they save, and snapshots are an
option, off by default.  They pay off where prefixes are long or forks cheap.

What stays in the caller: nothing runs there until the search ends; then the
strategy object handed in gets the final search state (so it can be saved and
resumed), and minimisation and the traced replay of a finding run there as
without snapshots.  ``check``, ``invariant`` and ``stop`` run in the explorer
processes, so their side effects on the caller's memory are lost (``progress``
is forwarded to the caller).  Without ``os.fork`` (Windows, a Ray worker)
:func:`usable` is false and the search replays prefixes as before.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import select
import signal
import struct
import sys
import time
from typing import Any

from . import watchdog

MAX_SNAPSHOTS = 48  # live snapshot processes of one search, at most
PROGRESS_EVERY = 0.2  # seconds between two progress messages to the caller

_HDR = struct.Struct("!cQ")


def usable() -> bool:
    """Can this process take snapshots (a POSIX ``fork``)?

    The search processes only run the model and talk through pipes, so a
    thread of the caller (a progress bar's) is harmless; a Ray worker, whose
    runtime threads the child would need, does not ask for snapshots (see
    ``tdpmmu.parallel.units``).
    """
    return hasattr(os, "fork") and sys.platform != "win32"


def _send(fd: int, kind: bytes, payload: bytes = b"") -> None:
    view = memoryview(_HDR.pack(kind, len(payload)) + payload)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks = []
    while n:
        b = os.read(fd, n)
        if not b:
            return None
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def _recv(fd: int) -> tuple[bytes, bytes] | None:
    head = _read_exact(fd, _HDR.size)
    if head is None:
        return None
    kind, n = _HDR.unpack(head)
    payload = _read_exact(fd, n) if n else b""
    if payload is None:
        return None
    return kind, payload


def _reap(block: bool) -> None:
    """Wait for exited children (blocking: for all of them), so their CPU time
    adds up in the caller's ``RUSAGE_CHILDREN`` and no zombie is left."""
    flags = 0 if block else os.WNOHANG
    while True:
        try:
            pid, _ = os.waitpid(-1, flags)
        except ChildProcessError:
            return
        except InterruptedError:  # pragma: no cover - a signal while waiting
            continue
        if pid == 0:
            return


class Forker:
    """One search's snapshots, as seen from the process running it now."""

    def __init__(self, strat: Any, progress: Any) -> None:
        self.strat = strat
        self.progress = progress
        self.snaps: list[tuple[int, int]] = []  # (decision, write fd), ascending
        self.next_at = 0  # the next decision at which to take a snapshot
        self.branch = 0
        self.res_w = -1  # to the caller
        self.life_r = -1  # EOF when the caller is gone or done
        self.last_progress = 0.0
        self.counters: Any = None  # the search's counters (explore._Search)
        self.cpu0 = 0.0

    # ------------------------------------------------------------ the caller
    def run(self, search: Any, loop: Any) -> None:
        """Run ``loop()`` (the search) in a forked process; fill ``search`` with
        its outcome and the strategy with its final state."""
        self.counters = search
        res_r, res_w = os.pipe()
        life_r, life_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child (coverage cannot see it)
            os.close(res_r)
            os.close(life_w)
            self.res_w, self.life_r = res_w, life_r
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the caller handles Ctrl-C
            self.cpu0 = time.process_time()
            try:
                loop()
                self._finish()
            except BaseException as exc:  # noqa: BLE001 - every failure goes to the caller
                self._fail(exc)
            os._exit(0)
        os.close(res_w)
        os.close(life_r)
        try:
            self._wait(res_r, search)
        finally:
            os.close(life_w)  # every snapshot left exits
            os.close(res_r)
            os.waitpid(pid, 0)

    def _wait(self, fd: int, search: Any) -> None:
        while True:
            msg = _recv(fd)
            if msg is None:
                from .runtime import EngineError
                raise EngineError("the snapshot search process died without a result")
            kind, payload = msg
            if kind == b"p":
                executions, nodes = pickle.loads(payload)
                if nodes is not None:
                    self.strat.nodes = nodes
                if self.progress is not None:
                    self.progress(executions)
            elif kind == b"f":
                fields, state = pickle.loads(payload)
                search.__dict__.update(fields)
                self.strat.__dict__.update(state)
                return
            else:
                raise pickle.loads(payload)

    # ------------------------------------------------------ search processes
    def _finish(self) -> None:
        c = self.counters
        c.cpu += time.process_time() - self.cpu0
        _send(self.res_w, b"f", pickle.dumps((dict(c.__dict__), self.strat.search_state()),
                                              pickle.HIGHEST_PROTOCOL))

    def _fail(self, exc: BaseException) -> None:
        try:
            data = pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)
            pickle.loads(data)
        except Exception:  # noqa: BLE001 - an exception that does not travel
            from .runtime import EngineError
            data = pickle.dumps(EngineError(f"{type(exc).__name__}: {exc}"))
        with contextlib.suppress(OSError):  # the caller may be gone
            _send(self.res_w, b"e", data)

    def caller_gone(self) -> bool:
        """Has the caller stopped waiting (Ctrl-C)?  Asked between executions."""
        r, _, _ = select.select([self.life_r], [], [], 0)
        return bool(r)

    def tick(self, executions: int) -> None:
        """Forward progress to the caller, a few times a second."""
        now = time.monotonic()
        if self.progress is None or now - self.last_progress < PROGRESS_EVERY:
            return
        self.last_progress = now
        _send(self.res_w, b"p", pickle.dumps((executions, self.strat.nodes),
                                              pickle.HIGHEST_PROTOCOL))

    def start(self, branch: int, at: int) -> None:
        """An execution runs from decision ``at`` (0: from ``setup()``) and takes
        its new decision at ``branch``: a snapshot at decision 0 if there is none
        yet, at the branch, then at ``branch + 1, 2, 4...``."""
        self.branch = branch = max(branch, 0)
        snaps = self.snaps
        if not snaps:
            self.next_at = 0
        else:
            self.next_at = branch + 1 if snaps[-1][0] >= branch else branch

    def take(self, ex: Any, enabled: list) -> None:
        """Called by the execution before decision ``self.next_at`` (or a later
        one): fork there, unless one thread only can run (no backtrack point can
        be there; the next decision is tried instead)."""
        if len(enabled) < 2 and ex.nsteps:
            return
        pos = self.strat.pos
        d = pos - self.branch
        self.next_at = self.branch if d < 0 else self.branch + (2 * d if d > 0 else 1)
        snaps = self.snaps
        if len(snaps) >= MAX_SNAPSHOTS or (snaps and snaps[-1][0] >= pos):
            return
        r, w = os.pipe()
        self.counters.forks += 1
        pid = os.fork()
        snaps.append((pos, w))
        if pid == 0:  # the child goes on with the execution
            os.close(r)
            watchdog.after_fork()
            gc.freeze()  # the collector leaves the parent's objects (and pages) alone
            return
        self._serve(ex, pos, r)  # returns only in a resumed child

    def _serve(self, ex: Any, pos: int, r: int) -> None:
        """Wait as the snapshot at decision ``pos`` until told to exit, and fork a
        new explorer for each resume."""
        while True:
            try:
                ready, _, _ = select.select([r, self.life_r], [], [])
            except InterruptedError:  # pragma: no cover
                continue
            _reap(block=False)
            msg = None if self.life_r in ready else _recv(r)
            if msg is None or msg[0] == b"x":
                os.close(r)
                _reap(block=True)
                os._exit(0)
            pid = os.fork()
            if pid == 0:
                os.close(r)
                watchdog.after_fork()
                self._resume(ex, pos, msg[1])
                return

    def _resume(self, ex: Any, pos: int, payload: bytes) -> None:
        fields, state, branch = pickle.loads(payload)
        self.cpu0 = time.process_time()
        self.counters.__dict__.update(fields)
        self.counters.forks += 1
        strat = self.strat
        strat.__dict__.update(state)
        strat.resumed(ex)
        ex.resumed_at = pos
        ex.skipped_steps = ex.nsteps
        # As in a fresh replay (explore._run_one): the states up to the branch
        # were checked; the first one after it is checked in full.
        ex.checked_upto = strat.branch if strat.prefix_checked else 0
        ex.inv_watch = None
        self.start(branch, pos)
        gc.freeze()

    def handoff(self, branch: int) -> bool:
        """Continue the search from the deepest snapshot at or before ``branch``
        (this process then exits); False when there is none."""
        snaps = self.snaps
        while snaps and snaps[-1][0] > branch:
            _, w = snaps.pop()
            _send(w, b"x")
            os.close(w)
        if not snaps:
            return False
        c = self.counters
        c.cpu += time.process_time() - self.cpu0
        payload = pickle.dumps((dict(c.__dict__), self.strat.search_state(), branch),
                               pickle.HIGHEST_PROTOCOL)
        _send(snaps[-1][1], b"r", payload)
        os._exit(0)
