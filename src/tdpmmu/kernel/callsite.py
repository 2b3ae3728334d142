"""Where a kernel primitive was called from: the model function, its kernel file, the chain.

Reports name *model* code, as a kernel oops names kernel functions: frames of the
engine and of this package are skipped.  A model module may say which kernel
source file it transliterates with a module-level ``__kernel_file__`` (e.g.
``"arch/x86/kvm/mmu/tdp_mmu.c"``); otherwise the Python file name is used.  A
module whose functions come from several kernel files (a version's overrides of
``tdp_mmu.c`` and ``mmu.c``) adds ``__kernel_files__``: function name -> the
files it lives in; the module's own file wins where it is one of them.

These helpers walk the Python stack, so they are for report paths and for rare
events (allocation, a new lock dependency), never for every lock operation.  A
chain kept for a later report (an allocation's, a free's) is a :class:`CallChain`:
the walk keeps the code objects only, the names are made when a report reads it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any, overload

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
    module = frame.f_globals
    declared = module.get("__kernel_file__")
    per_function = module.get("__kernel_files__")
    if per_function:
        files = per_function.get(frame.f_code.co_name)
        if files and declared not in files:
            return files[0]
    return declared if isinstance(declared, str) else os.path.basename(frame.f_code.co_filename)


def model_function() -> str:
    """Name of the innermost model function on the stack."""
    return function_of(caller_frame())


class CallChain(Sequence[str]):
    """Model function names, innermost first, made from the captured code objects
    on first use (most allocation and free sites are never reported)."""

    __slots__ = ("_codes", "_limit", "_names")

    def __init__(self, codes: tuple[Any, ...], limit: int) -> None:
        self._codes = codes
        self._limit = limit
        self._names: list[str] | None = None

    def names(self) -> list[str]:
        if self._names is None:
            self._names = runtime.code_names(self._codes, _hidden_prefixes())[::-1][:self._limit]
            self._codes = ()
        return self._names

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        return self.names()[i]

    def __len__(self) -> int:
        return len(self.names())

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CallChain):
            other = other.names()
        return self.names() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self.names())


def call_chain(limit: int = CHAIN_LIMIT) -> CallChain:
    """Model function names, innermost first (at most ``limit``), made lazily."""
    return CallChain(runtime.frame_codes(sys._getframe(1)), limit)


def task_name() -> str:
    """The running model thread's name ("setup" outside model threads)."""
    t = runtime.current_thread()
    return t.name if t is not None else "setup"


def cpu() -> int:
    """The running model thread's id, standing for its CPU number."""
    t = runtime.current_thread()
    return t.tid if t is not None else 0


def indented(chain: Sequence[str], indent: str = "  ") -> list[str]:
    return [indent + name for name in chain] or [indent + "?"]
