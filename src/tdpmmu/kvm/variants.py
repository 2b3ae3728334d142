"""What a variant file's classes say, checked before they run.

A variant whose override is misspelled, whose file holds several classes, or
whose override no longer reads a ``--knob``'s attribute would verify without
checking what its author meant; a Python error in its own code would look
like a kernel finding.  This module turns those into an error, a note, a
warning, and a "your variant raised" (a user error, exit 2).
"""

from __future__ import annotations

import difflib
import inspect
import re
import sys
import types
from collections.abc import Iterator
from typing import Any

VARIANT_MODULE_PREFIX = "tdpmmu_variant_"


def _codes(obj: Any) -> Iterator[types.CodeType]:
    """The code objects of a function (or property, or class-level value), nested ones too."""
    for fn in (getattr(obj, "fget", None), getattr(obj, "__func__", None), obj):
        code = getattr(fn, "__code__", None)
        if isinstance(code, types.CodeType):
            stack = [code]
            while stack:
                c = stack.pop()
                yield c
                stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
            return


def _names_used(obj: Any) -> set[str]:
    """Attribute and global names a function's code mentions (strings too, for getattr)."""
    out: set[str] = set()
    for c in _codes(obj):
        out.update(c.co_names)
        out.update(k for k in c.co_consts if isinstance(k, str))
    return out


def user_classes(cls: type) -> list[type]:
    """The classes of ``cls``'s MRO that come from variant files."""
    return [c for c in cls.__mro__ if c.__module__.startswith(VARIANT_MODULE_PREFIX)]


def _line_of(cls: type, attr: str, value: Any, path: str) -> int | None:
    for c in _codes(value):
        return c.co_firstlineno
    try:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if re.match(rf"\s+{re.escape(attr)}\s*[:=]", line):
                    return i
    except OSError:
        pass
    return None


def check_overrides(cls: type, builtin: list[type], path: str) -> str | None:
    """An error message for the first name the variant defines that no kernel
    class has and nothing in the variant uses (a misspelled override), or None."""
    kernel_names = set().union(*(dir(b) for b in builtin))
    mine = user_classes(cls)
    used: set[str] = set()
    for c in mine:
        for value in vars(c).values():
            used |= _names_used(value)
    module = sys.modules.get(cls.__module__)
    for value in vars(module).values() if module is not None else ():
        if isinstance(value, types.FunctionType):
            used |= _names_used(value)
    for c in mine:
        for attr, value in vars(c).items():
            if attr.startswith("__") or attr in kernel_names or attr in used:
                continue
            where = path
            line = _line_of(c, attr, value, path)
            if line is not None:
                where = f"{path}:{line}"
            public = [n for n in kernel_names if not n.startswith("__")]
            close = difflib.get_close_matches(attr, public, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            return (f"{where}: {c.__name__}.{attr} overrides nothing: no kernel version has "
                    f"{attr!r} and the variant does not use it{hint}")
    return None


def choice_note(path: str, found: list[type], chosen: type) -> str | None:
    """Which class of a file with several is the kernel, and why (None: only one)."""
    base = next((b for b in chosen.__mro__[1:] if b not in user_classes(chosen)), None)
    what = f"class {chosen.__name__} (name {chosen.name!r}, built on {getattr(base, 'name', '?')})"
    if len(found) == 1:
        return None
    others = [c.__name__ for c in found if c is not chosen]
    bases = [n for n in others if any(b.__name__ == n for b in chosen.__mro__[1:])]
    why = "the last one the file defines"
    if bases and len(bases) == len(others):
        why += f"; {', '.join(bases)} {'is its base' if len(bases) == 1 else 'are its bases'}"
    return (f"{path} defines {len(found)} kernel classes ({', '.join(c.__name__ for c in found)}): "
            f"using {what}, {why}")


def knob_warnings(cls: type, knobs: dict[str, str], table: dict[str, tuple]) -> list[str]:
    """A warning for each ``--knob`` whose attribute the variant's code no longer
    reads: every kernel function that read it is overridden by one that does not."""
    mine = user_classes(cls)
    if not mine:
        return []
    out = []
    for name, choice in knobs.items():
        attr = table[name][0]
        if any(attr in vars(c) for c in mine):
            continue  # the variant sets it itself: the knob's value is what it reads
        readers = sorted({fname for c in cls.__mro__ if c not in mine
                          for fname, fn in vars(c).items() if attr in _names_used(fn)})
        if not readers:
            continue
        still = [r for r in readers if attr in _names_used(getattr(cls, r, None))]
        new = any(attr in _names_used(v) for c in mine for v in vars(c).values())
        if still or new:
            continue
        out.append(f"--knob {name}={choice}: {getattr(cls, 'name', cls.__name__)} overrides "
                   f"{', '.join(readers)}, which read {attr}, and its override does not: "
                   "the knob changes nothing")
    return out


def _names_used_outside(kernel_classes: set[type]) -> set[str]:
    """Names mentioned by the package's code that is not a kernel class's method:
    the scenario actions, properties and checker that call into the model."""
    out: set[str] = set()
    for modname, module in list(sys.modules.items()):
        if not modname.startswith("tdpmmu."):
            continue
        for value in vars(module).values():
            if isinstance(value, types.FunctionType):
                out |= _names_used(value)
            elif inspect.isclass(value) and value not in kernel_classes and \
                    value.__module__ == modname:
                for member in vars(value).values():
                    out |= _names_used(member)
    return out


def dead_overrides(cls: type, builtin: list[type]) -> list[tuple[type, str]]:
    """(class, name) of each kernel function a variant class of ``cls``'s MRO
    overrides that the code ``cls`` runs never calls: renamed or removed in
    the version it builds on (an older version's name the class still
    inherits), so the override changes nothing."""
    mine = user_classes(cls)
    if not mine:
        return []
    kernel_classes = {k for b in builtin for k in b.__mro__}
    kernel_names = set().union(*(dir(b) for b in builtin))
    resolved = {name: inspect.getattr_static(cls, name) for name in dir(cls)
                if not name.startswith("__")}
    uses = {name: _names_used(value) for name, value in resolved.items()}
    outside = _names_used_outside(kernel_classes)
    out = []
    for c in mine:
        for attr, value in vars(c).items():
            if attr.startswith("__") or attr not in kernel_names or not callable(value):
                continue
            if attr in outside or any(attr in names for name, names in uses.items()
                                      if name != attr):
                continue
            out.append((c, attr))
    return out


def dead_override_warnings(cls: type, builtin: list[type]) -> list[str]:
    """A warning for each override :func:`dead_overrides` finds."""
    base = next((c for c in cls.__mro__ if c in builtin), None)
    version = getattr(base, "name", base.__name__ if base else "?")
    return [f"{c.__name__}.{attr}: nothing in {version}'s code calls {attr} "
            "(renamed or removed in that version, or never reached): the "
            "override changes nothing" for c, attr in dead_overrides(cls, builtin)]


_FRAME = re.compile(r'^\s*File "(?P<file>.+)", line (?P<line>\d+), in (?P<func>\S+)')


def variant_files(cls: type) -> set[str]:
    files = set()
    for c in user_classes(cls):
        f = getattr(sys.modules.get(c.__module__), "__file__", None)
        if f:
            files.add(f)
    return files


def variant_raised(cls: type, message: str, traceback_lines: list[str]) -> str | None:
    """The user error for a Python exception (not a kernel finding) in a model
    thread of a variant that overrides functions, or None for a built-in kernel.

    When the innermost frame is in a variant file it is "your variant raised",
    with the traceback's lines in that file.  Otherwise the exception came
    from kernel code the variant's code fed (an override that returned or
    passed the wrong thing): the modelled kernel raises no Python errors of
    its own, so that is the variant's too, said as such.
    """
    files = variant_files(cls)
    overrides = any(callable(v) for c in user_classes(cls) for v in vars(c).values())
    lines = "\n".join(traceback_lines).splitlines()
    frames = [m for line in lines for m in [_FRAME.match(line)] if m]
    if not files or not frames or not overrides:
        return None
    inner = frames[-1]
    mine = [f"{f['line']} in {f['func']}" for f in frames if f["file"] in files]
    if inner["file"] in files:
        return (f"{inner['file']}:{inner['line']}: your variant raised {message} (traceback "
                f"lines in the variant file, innermost first: {', '.join(reversed(mine))})")
    via = (f"called from the variant at lines {', '.join(reversed(mine))}" if mine else
           "after the variant's code ran: check what its overrides return")
    return (f"{inner['file']}:{inner['line']}: {message} in {inner['func']}, kernel code "
            f"running your variant {', '.join(sorted(files))} ({via}); a Python error, "
            "not a kernel finding")
