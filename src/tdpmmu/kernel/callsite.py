"""Where a kernel primitive was called from: the model function, its kernel file, the chain.

Reports name *model* code, as a kernel oops names kernel functions: frames of the
engine and of this package are skipped.  A model module may say which kernel
source file it transliterates with a module-level ``__kernel_file__`` (e.g.
``"arch/x86/kvm/mmu/tdp_mmu.c"``); otherwise the Python file name is used.

These helpers walk the Python stack, so they are for report paths and for rare
events (allocation, a new lock dependency), never for every lock operation.
"""

from __future__ import annotations

import os
import sys
from types import FrameType

from ..engine import runtime

runtime.hide_frames_of(__file__)

_ENGINE_DIR = os.path.dirname(runtime.__file__)
CHAIN_LIMIT = 8  # frames kept in a call chain, innermost first


def _hidden_prefixes() -> tuple[str, ...]:
    return (_ENGINE_DIR, *runtime.HIDDEN_FRAME_PREFIXES)


def caller_frame() -> FrameType | None:
    """The innermost frame of model code (outside the engine and the primitives)."""
    hidden = _hidden_prefixes()
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(hidden):
        frame = frame.f_back
    return frame


def function_of(frame: FrameType | None) -> str:
    return frame.f_code.co_name if frame is not None else "?"


def kernel_file(frame: FrameType | None) -> str:
    """The kernel source file a model frame stands for."""
    if frame is None:
        return "?"
    declared = frame.f_globals.get("__kernel_file__")
    return declared if isinstance(declared, str) else os.path.basename(frame.f_code.co_filename)


def model_function() -> str:
    """Name of the innermost model function on the stack."""
    return function_of(caller_frame())


def call_chain(limit: int = CHAIN_LIMIT) -> list[str]:
    """Model function names, innermost first (at most ``limit``)."""
    names = runtime.model_stack(sys._getframe(1), _hidden_prefixes())
    return names[::-1][:limit]


def task_name() -> str:
    """The running model thread's name ("setup" outside model threads)."""
    t = runtime.current_thread()
    return t.name if t is not None else "setup"


def cpu() -> int:
    """The running model thread's id, standing for its CPU number."""
    t = runtime.current_thread()
    return t.tid if t is not None else 0


def indented(chain: list[str], indent: str = "  ") -> list[str]:
    return [indent + name for name in chain] or [indent + "?"]
