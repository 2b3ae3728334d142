"""BUG(), BUG_ON(), WARN() and friends (include/asm-generic/bug.h).

``BUG()`` stops the execution with a finding of kind ``"BUG"``::

    kernel BUG at <file>: <function>

where ``<function>`` is the model function that called it and ``<file>`` its
module's ``__kernel_file__`` (else the Python file name).  The model has no
line numbers worth printing: the function names the place.

``WARN()`` reports ``WARNING: CPU: <thread> at <file>: <function>`` (a model
thread stands for a CPU).  The model runs with ``panic_on_warn`` set by
default, so a warning is fatal (kind ``"WARN"``) and the first one stops the
execution, as on a test machine; :func:`set_panic_on_warn` (``False``) makes
warnings soft findings that let the execution continue.  A WARN with a message
uses that message as the report's first line and puts the WARNING line in the
details, as the kernel prints the message just before it.
"""

from __future__ import annotations

from typing import Any, NoReturn

from ..engine import runtime
from ..engine.runtime import Finding
from . import callsite, context

runtime.hide_frames_of(__file__)


def BUG() -> NoReturn:
    """Stop with ``kernel BUG at <file>: <function>``."""
    frame = callsite.caller_frame()
    function = callsite.function_of(frame)
    raise Finding("BUG", f"kernel BUG at {callsite.kernel_file(frame)}: {function}",
                  function=function, details=_oops_details())


def BUG_ON(condition: Any) -> None:
    """``BUG()`` when ``condition`` holds."""
    if condition:
        BUG()


def set_panic_on_warn(enabled: bool) -> bool:
    """Make WARNs fatal (the default) or soft; returns the previous setting.

    Inside an execution the setting holds for that execution; outside (before
    ``explore``) it changes the default of every later execution.
    """
    return context.set_switch("panic_on_warn", enabled)


def panic_on_warn() -> bool:
    return context.switch("panic_on_warn")


def WARN(condition: Any, fmt: str | None = None, *args: Any) -> bool:
    """Warn when ``condition`` holds, with an optional printf-style message; returns it."""
    if condition:
        _warn(_format(fmt, args))
    return bool(condition)


def WARN_ON(condition: Any) -> bool:
    """Warn when ``condition`` holds; returns it (``if (WARN_ON(x)) return;``)."""
    if condition:
        _warn(None)
    return bool(condition)


def WARN_ONCE(condition: Any, fmt: str | None = None, *args: Any) -> bool:
    """Like :func:`WARN`, but at most once per call site and execution."""
    if condition and _first_time(callsite.caller_frame()):
        _warn(_format(fmt, args))
    return bool(condition)


def WARN_ON_ONCE(condition: Any) -> bool:
    """Like :func:`WARN_ON`, but at most once per call site and execution."""
    if condition and _first_time(callsite.caller_frame()):
        _warn(None)
    return bool(condition)


def KVM_MMU_WARN_ON(condition: Any, prove_mmu: bool) -> bool:
    """``KVM_MMU_WARN_ON(x)`` (arch/x86/kvm/mmu/mmu_internal.h, 6.6+): with
    ``CONFIG_KVM_PROVE_MMU=y`` a ``WARN_ON_ONCE(x)`` at the caller; without it
    (the kernel's default) ``BUILD_BUG_ON_INVALID(x)``, which checks nothing
    at run time and is false.  The caller passes its kernel's config
    (``prove_mmu``); Python evaluates ``condition`` either way, so callers
    pass side-effect-free reads."""
    if not prove_mmu:
        return False
    if condition and _first_time(callsite.caller_frame()):
        _warn(None)
    return bool(condition)


def KVM_BUG_ON(condition: Any, kvm: Any) -> bool:
    """``KVM_BUG_ON(cond, kvm)`` (include/linux/kvm_host.h): a ``WARN_ON_ONCE``
    at the caller, unless the VM is already bugged, then the VM is marked
    bugged (``kvm_vm_bugged``: every later ioctl fails).  With panic_on_warn
    (the default) the warning stops the execution."""
    ret = bool(condition)
    if ret and not getattr(kvm, "vm_bugged", False) and _first_time(callsite.caller_frame()):
        _warn(None)
    if ret:
        kvm.vm_bugged = True
    return ret


def warn_at(text: str | None, file: str, function: str, once_key: Any = None) -> None:
    """A warning raised inside a primitive, located at the kernel's own site.

    ``file``/``function`` name the kernel's site (e.g. ``lib/refcount.c``,
    ``refcount_warn_saturate``); the finding's ``function`` is still the model
    function that called the primitive.  ``once_key``: warn once per execution.
    """
    if once_key is not None:
        seen = runtime.execution_local().setdefault("bug.warn_once", set())
        if once_key in seen:
            return
        seen.add(once_key)
    _warn(text, (file, function))


# ------------------------------------------------------------------ internals
def _format(fmt: str | None, args: tuple[Any, ...]) -> str | None:
    if fmt is None:
        return None
    if args:
        try:
            fmt = fmt % args
        except (TypeError, ValueError):
            fmt = f"{fmt} {args!r}"
    return fmt.rstrip("\n")


def _first_time(frame: Any) -> bool:
    key = (frame.f_code, frame.f_lineno) if frame is not None else None
    seen = runtime.execution_local().setdefault("bug.warn_once", set())
    if key in seen:
        return False
    seen.add(key)
    return True


def _oops_details() -> list[str]:
    return [f"CPU: {callsite.cpu()} Comm: {callsite.task_name()}", "Call Trace:",
            *callsite.indented(callsite.call_chain())]


def _warn(text: str | None, site: tuple[str, str] | None = None) -> None:
    frame = callsite.caller_frame()
    function = callsite.function_of(frame)
    file, where = site if site is not None else (callsite.kernel_file(frame), function)
    line = f"WARNING: CPU: {callsite.task_name()} at {file}: {where}"
    details = ([line] if text else []) + _oops_details()
    message = text or line
    if panic_on_warn():
        details.append("Kernel panic - not syncing: panic_on_warn set ...")
        raise Finding("WARN", message, function=function, details=details)
    runtime.report("WARN", message, function=function, details=details)
