"""Probes on the entry and return of a model kernel function (as kprobes are).

Most properties watch the model's tracepoints.  A few judge what a kernel
function promises about its own calls -- "puts this reference once", "when it
returns, nothing maps ..." -- and need its entry or return, which no
tracepoint marks.  :func:`install_kprobe` wraps the function on the kernel
object (once per object: the object serves every execution), so a variant's
override is probed as well; each call then sends the tracepoints
``kprobe:NAME`` (before the body runs) and ``kretprobe:NAME`` (after it
returns) to ``kvm.probes``, with the call's arguments and the model function
that called it.  The probe adds no visible operation: the search is the same.

The probed function's first argument must be the VM (``struct kvm``), as it
is for the functions probed here.
"""

from __future__ import annotations

import functools
from typing import Any

from ..engine import runtime
from ..kernel import callsite

# The wrapper's frames are not kernel code: callers are named past them.
runtime.hide_frames_of(__file__)


def install_kprobe(kernel: Any, function: str) -> None:
    """Probe ``kernel.<function>`` (idempotent)."""
    probed = kernel.__dict__.setdefault("_kprobed", set())
    if function in probed:
        return
    probed.add(function)
    body = getattr(kernel, function)

    @functools.wraps(body)
    def probe(kvm: Any, *args: Any, **kwargs: Any) -> Any:
        caller = callsite.model_function()
        kernel.trace_event(kvm, f"kprobe:{function}", args=args, caller=caller)
        ret = body(kvm, *args, **kwargs)
        kernel.trace_event(kvm, f"kretprobe:{function}", args=args, caller=caller, ret=ret)
        return ret

    setattr(kernel, function, probe)


__all__ = ["install_kprobe"]
