"""Fidelity lists: per kernel version, the real functions the model must carry.

Each ``vX_Y.toml`` in this package lists the functions of that release's
``arch/x86/kvm/mmu/tdp_mmu.c`` and ``tdp_mmu.h`` that touch roots, take or
drop ``mmu_lock`` or yield (directly, or by calling such a function), and the
root functions of ``mmu.c`` the TDP MMU uses, as read from the stored kernel
tree named in the file.  A listed function is either modelled -- a method of
the version's class under its kernel name -- or carries ``left_out`` with the
reason.  Python mangles method names that start with two underscores, so a
kernel ``__name`` is modelled as ``_name``.

The ``legacy_vX_Y.toml`` lists do the same for the legacy (shadow) MMU's
direct roots (``tdp_mmu=0``) in ``mmu.c``, one list per release whose
root-touching legacy functions changed (names or locking); a version is
measured against the newest such list not after it (``legacy_for``).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_DIR = Path(__file__).parent


@dataclass(frozen=True)
class Listed:
    """One function of a fidelity list."""

    name: str
    file: str
    touches: tuple[str, ...]
    left_out: str | None

    @property
    def model_name(self) -> str:
        """The method name the model uses for it."""
        return self.name[1:] if self.name.startswith("__") else self.name


@dataclass(frozen=True)
class FidelityList:
    version: str
    tree: str
    tree_release: str
    functions: tuple[Listed, ...]

    def modelled(self, cls: type) -> list[Listed]:
        """The listed functions that ``cls`` carries under their kernel names."""
        return [f for f in self.functions if hasattr(cls, f.model_name)]

    def missing(self, cls: type) -> list[Listed]:
        """Listed functions neither on ``cls`` nor left out with a reason."""
        return [f for f in self.functions
                if not hasattr(cls, f.model_name) and not (f.left_out or "").strip()]


def file_for(version: str) -> Path:
    """``v5.12`` -> ``.../fidelity/v5_12.toml``."""
    return _DIR / f"{version.replace('.', '_')}.toml"


@cache
def load(version: str) -> FidelityList | None:
    """The fidelity list of a version name such as ``v5.12`` (None if there is none)."""
    path = file_for(version)
    if not path.is_file():
        return None
    data = tomllib.loads(path.read_text())
    funcs = tuple(Listed(name, spec["file"], tuple(spec.get("touches", ())),
                         spec.get("left_out"))
                  for name, spec in data.get("functions", {}).items())
    return FidelityList(data["version"], data.get("tree", ""), data.get("tree_release", ""),
                        funcs)


@cache
def load_legacy(version: str) -> FidelityList | None:
    """The legacy (shadow) MMU's list of a version (``legacy_v5_10.toml``), or None."""
    path = _DIR / f"legacy_{version.replace('.', '_')}.toml"
    if not path.is_file():
        return None
    data = tomllib.loads(path.read_text())
    funcs = tuple(Listed(name, spec["file"], tuple(spec.get("touches", ())),
                         spec.get("left_out"))
                  for name, spec in data.get("functions", {}).items())
    return FidelityList(data["version"], data.get("tree", ""), data.get("tree_release", ""),
                        funcs)


# Where the listed files live in the tree (the lists name them by basename).
_KERNEL_DIRS = {"mmu.c": "arch/x86/kvm/mmu", "tdp_mmu.c": "arch/x86/kvm/mmu",
                "tdp_mmu.h": "arch/x86/kvm/mmu"}


@cache
def kernel_files() -> dict[str, tuple[str, ...]]:
    """Model function name -> the kernel files the lists place it in (full paths),
    for a module's ``__kernel_files__``: reports then name the right file for a
    version module's ``mmu.c`` overrides (see ``kernel.callsite.kernel_file``)."""
    found: dict[str, list[str]] = {}
    lists = [load(v) for v in versions()] + [load_legacy(v) for v in legacy_versions()]
    for fl in lists:
        assert fl is not None
        for f in fl.functions:
            path = f"{_KERNEL_DIRS.get(f.file, 'arch/x86/kvm/mmu')}/{f.file}"
            paths = found.setdefault(f.model_name, [])
            if path not in paths:
                paths.append(path)
    return {name: tuple(paths) for name, paths in found.items()}


def legacy_versions() -> list[str]:
    """Every version with a legacy (shadow) MMU list, oldest first."""
    names = [p.stem[len("legacy_"):].replace("_", ".") for p in _DIR.glob("legacy_v*.toml")]
    return sorted(names, key=_version_key)


def legacy_for(version: str) -> FidelityList | None:
    """The legacy MMU's list a version is measured against: the newest list of
    a release not after the version's own (``v5.13`` -> ``legacy_v5_10``)."""
    release = _version_key(release_of(version))
    chosen = [v for v in legacy_versions() if _version_key(v) <= release]
    return load_legacy(chosen[-1]) if chosen else None


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in name[1:].split("."))


def versions() -> list[str]:
    """Every version that has a fidelity list, oldest first."""
    names = [p.stem.replace("_", ".") for p in _DIR.glob("v*.toml")]
    return sorted(names, key=lambda n: tuple(int(x) for x in n[1:].split(".")))


def release_of(version: str) -> str:
    """The release a version name stands for: ``v5.10-fix-v1`` -> ``v5.10``."""
    m = re.match(r"v\d+\.\d+", version)
    return m.group(0) if m else version


def coverage(builtin: dict[str, type]) -> list[str]:
    """One line per listed version for ``tdpmmu list``: how much of its list is modelled."""
    lines = []
    for version in versions():
        fl = load(version)
        assert fl is not None
        cls = builtin.get(version)
        total = len(fl.functions)
        if cls is None:
            lines.append(f"{version:<7} not modelled yet ({total} functions listed)")
        else:
            line = (f"{version:<7} {len(fl.modelled(cls))}/{total} tdp_mmu.c/mmu.c "
                    "functions modelled")
            legacy = legacy_for(version)
            if legacy is not None:
                line += (f"; legacy MMU (tdp_mmu=0): {len(legacy.modelled(cls))}/"
                         f"{len(legacy.functions)} of the {legacy.version} list")
            lines.append(line)
    return lines
