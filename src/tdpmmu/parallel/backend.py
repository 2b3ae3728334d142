"""Where work units run: worker processes on this machine, or tasks on a Ray cluster.

Both offer the same four operations, so the matrix and the split search do not
care which one runs them: ``submit`` a module-level function on a picklable
argument, ``wait`` for some of the submitted ones, take a ``result``, and
``stop`` everything (running searches end at their next execution boundary).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent import futures
from typing import Any

from ..engine import watchdog
from .units import set_stop_event


class Backend:
    jobs: int = 1

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        raise NotImplementedError

    def wait(self, handles: list[Any]) -> list[Any]:
        """Block until at least one of ``handles`` is done; return the done ones."""
        raise NotImplementedError

    def result(self, handle: Any) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        """Ask running work to end early and drop work not started."""

    def close(self) -> None:
        pass

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalBackend(Backend):
    """A pool of ``jobs`` spawned processes (spawn: no state inherited by fork)."""

    def __init__(self, jobs: int | None = None) -> None:
        self.jobs = jobs or os.cpu_count() or 1
        ctx = multiprocessing.get_context("spawn")
        self._event = ctx.Event()
        self._pool = futures.ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx,
                                                 initializer=set_stop_event,
                                                 initargs=(self._event,))
        self._submitted: list[futures.Future] = []

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        # The pool spawns its workers in submit().  They ignore Ctrl-C (the
        # coordinator stops them through the event), but only once their
        # initializer has run, after seconds of imports on a loaded machine: a
        # Ctrl-C before that killed a worker mid-import (a traceback, and a
        # pool the coordinator then waited on).  Spawned with SIGINT blocked,
        # a worker inherits the mask and never sees it; the coordinator gets
        # a Ctrl-C of this window when it unblocks.
        blockable = hasattr(signal, "pthread_sigmask")
        if blockable:
            old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            with watchdog.paused():  # nor the soft-lockup timer (see engine.watchdog)
                fut = self._pool.submit(fn, arg)
        finally:
            if blockable:
                signal.pthread_sigmask(signal.SIG_SETMASK, old)
        self._submitted.append(fut)
        return fut

    def wait(self, handles: list[Any]) -> list[Any]:
        done, _ = futures.wait(handles, return_when=futures.FIRST_COMPLETED)
        return [h for h in handles if h in done]

    def result(self, handle: Any) -> Any:
        return handle.result()

    def stop(self) -> None:
        self._event.set()
        for fut in self._submitted:
            fut.cancel()  # only those not started yet

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class RayBackend(Backend):
    """Tasks on a Ray cluster: ``address`` (or ``RAY_ADDRESS``), else a local instance.

    Needs the optional extra ``tdpmmu[ray]``.  Ray moves the arguments and
    results (its own serialisation); there is no protocol of ours on the wire.
    A work unit replays its prefix from ``setup()`` on whichever node runs it.
    """

    def __init__(self, address: str | None = None, jobs: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            from ..checker import UserError
            raise UserError("--backend ray needs Ray: pip install 'tdpmmu[ray]'") from None
        self._ray = ray
        self._owned = False
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS") or None
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                kwargs["num_cpus"] = jobs or os.cpu_count() or 1
                kwargs["_node_ip_address"] = "127.0.0.1"  # a local instance stays on loopback
            ray.init(address=address, **kwargs)
            self._owned = True
        self.jobs = jobs or int(ray.cluster_resources().get("CPU", 1))
        self._remote: dict[Callable[[Any], Any], Any] = {}
        self._pending: list[Any] = []

    def submit(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(num_cpus=1, max_retries=0)(fn)
        ref = remote.remote(arg)
        self._pending.append(ref)
        return ref

    def wait(self, handles: list[Any]) -> list[Any]:
        done, _ = self._ray.wait(handles, num_returns=1)
        done_set = set(done)
        return [h for h in handles if h in done_set]

    def result(self, handle: Any) -> Any:
        return self._ray.get(handle)

    def stop(self) -> None:
        for ref in self._pending:
            self._ray.cancel(ref, force=False)

    def close(self) -> None:
        if self._owned:
            self._ray.shutdown()


def make_backend(name: str, jobs: int | None, address: str | None = None) -> Backend:
    if name == "ray":
        return RayBackend(address, jobs)
    return LocalBackend(jobs)
