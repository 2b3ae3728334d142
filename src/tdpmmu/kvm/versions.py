"""Kernel versions: each a class, each later one overriding only what its patch changed.

``V5_10`` is the TDP MMU as released in Linux 5.10.  ``V5_10_fix_v1`` is the
first attempt at the fix (Jan 5 2021): free the root when the put drops the
count to zero, still inside the plain list walk.  ``V5_11`` carries the landed
fix, "KVM: x86/mmu: Ensure TDP MMU roots are freed after yield" (a889ea54b3da):
the ``for_each_tdp_mmu_root_yield_safe`` iterator.

A user's variant is a Python file defining a subclass of one of these (see
:func:`load_kernel`).
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..kernel import list_first_entry, list_next_entry, lockdep_assert_held
from . import fidelity
from .kvm_main import KvmMain
from .mmu import Mmu
from .mmu_legacy import MmuLegacy
from .structs import kvm_mmu_page
from .tdp_mmu import TdpMmu, kvm_mmu_page_as_id
from .vmx import Vmx
from .x86 import X86

# The 5.10/5.11 overrides here are tdp_mmu.c functions (reports name that file).
__kernel_file__ = "arch/x86/kvm/mmu/tdp_mmu.c"
__kernel_files__ = fidelity.kernel_files()


class KernelError(ValueError):
    """A kernel name or variant file that cannot be used (a user error)."""


class V5_10(X86, Vmx, KvmMain, Mmu, MmuLegacy, TdpMmu):
    """Linux v5.10: the walks take and drop root references by hand and ignore
    what the put returns, so a root can stay on the list with a count of 0.

    ``tdp_mmu`` is the kvm module parameter's default at this version (0 until
    5.15): a run sets it from the scenario (``[vm] tdp_mmu``) or the command
    line (``--tdp-mmu``).  With 0 the direct roots are the legacy MMU's
    (:mod:`tdpmmu.kvm.mmu_legacy`)."""

    name = "v5.10"
    summary = "Linux 5.10: get/put by hand around yielding walks"


class V5_10_fix_v1(V5_10):
    """The fix's v1: free a root when the walk's put drops it to 0, but keep the
    plain ``list_for_each_entry``, which then reads the freed root's poisoned
    ``link.next``."""

    name = "v5.10-fix-v1"
    summary = "first fix attempt: free at 0 inside list_for_each_entry"

    def tdp_mmu_put_root(self, kvm: Any, root: kvm_mmu_page) -> None:
        if self.kvm_mmu_put_root(kvm, root):
            self.kvm_tdp_mmu_free_root(kvm, root)

    def kvm_tdp_mmu_zap_gfn_range(self, kvm: Any, start: int, end: int) -> bool:
        flush = False
        for root in self.for_each_tdp_mmu_root(kvm):
            self.kvm_mmu_get_root(kvm, root)
            flush |= self.zap_gfn_range(kvm, root, start, end, True)
            self.tdp_mmu_put_root(kvm, root)
        return flush

    def kvm_tdp_mmu_handle_hva_range(self, kvm: Any, start: int, end: int, data: Any,
                                     handler: Any) -> int:
        ret = 0
        for root in self.for_each_tdp_mmu_root(kvm):
            self.kvm_mmu_get_root(kvm, root)
            ret |= self.handle_hva_range_root(kvm, root, start, end, data, handler)
            self.tdp_mmu_put_root(kvm, root)
        return ret

    def slot_root_walk(self, kvm: Any, slot: Any, body: Any) -> bool:
        spte_set = False
        for root in self.for_each_tdp_mmu_root(kvm):
            if kvm_mmu_page_as_id(root) != slot.as_id:
                continue
            self.kvm_mmu_get_root(kvm, root)
            spte_set |= body(root)
            self.tdp_mmu_put_root(kvm, root)
        return spte_set


class V5_11(V5_10):
    """Linux 5.11: ``for_each_tdp_mmu_root_yield_safe`` takes a reference on
    entry, reads the next root while the lock is held and the reference still
    pins the current one, then puts (and frees at 0)."""

    name = "v5.11"
    summary = "Linux 5.11: for_each_tdp_mmu_root_yield_safe"

    # What-if: read the next root before the body runs, list_for_each_entry_safe
    # style, instead of after the body re-took the lock.
    yield_safe_next_before_body = False

    def tdp_mmu_put_root(self, kvm: Any, root: kvm_mmu_page) -> None:
        if self.kvm_mmu_put_root(kvm, root):
            self.kvm_tdp_mmu_free_root(kvm, root)

    def tdp_mmu_next_root_valid(self, kvm: Any, root: kvm_mmu_page | None) -> bool:
        lockdep_assert_held(kvm.mmu_lock)
        # list_entry_is_head(): container_of(head) is None in the model.
        if root is None or root.link is kvm.arch.tdp_mmu_roots:
            return False
        self.kvm_mmu_get_root(kvm, root)
        return True

    def tdp_mmu_next_root(self, kvm: Any, root: kvm_mmu_page) -> kvm_mmu_page | None:
        # Read the next root while our reference keeps this one on the list.
        next_root = list_next_entry(root, "link")
        self.tdp_mmu_put_root(kvm, root)
        return next_root

    def for_each_tdp_mmu_root_yield_safe(self, kvm: Any) -> Iterator[kvm_mmu_page]:
        root = list_first_entry(kvm.arch.tdp_mmu_roots)
        while self.tdp_mmu_next_root_valid(kvm, root):
            if self.yield_safe_next_before_body:
                next_root = list_next_entry(root, "link")
                yield root
                self.tdp_mmu_put_root(kvm, root)
                root = next_root
            else:
                yield root
                root = self.tdp_mmu_next_root(kvm, root)

    def kvm_tdp_mmu_zap_gfn_range(self, kvm: Any, start: int, end: int) -> bool:
        flush = False
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm):
            flush |= self.zap_gfn_range(kvm, root, start, end, True)
        return flush

    def kvm_tdp_mmu_handle_hva_range(self, kvm: Any, start: int, end: int, data: Any,
                                     handler: Any) -> int:
        ret = 0
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm):
            ret |= self.handle_hva_range_root(kvm, root, start, end, data, handler)
        return ret

    def slot_root_walk(self, kvm: Any, slot: Any, body: Any) -> bool:
        spte_set = False
        for root in self.for_each_tdp_mmu_root_yield_safe(kvm):
            # The iterator already holds a reference: skipping is a plain continue.
            if kvm_mmu_page_as_id(root) != slot.as_id:
                continue
            spte_set |= body(root)
        return spte_set


from .v5_12 import V5_12  # noqa: E402  (it subclasses V5_11, defined above)
from .v5_13 import V5_13  # noqa: E402
from .v5_15 import V5_15  # noqa: E402
from .v5_17 import V5_17  # noqa: E402
from .v5_18 import V5_18  # noqa: E402
from .v6_1 import V6_1  # noqa: E402
from .v6_4 import V6_4  # noqa: E402
from .v6_6 import V6_6  # noqa: E402
from .v6_9 import V6_9  # noqa: E402
from .v6_18 import V6_18  # noqa: E402

BUILTIN: dict[str, type[V5_10]] = {cls.name: cls for cls in (V5_10, V5_10_fix_v1, V5_11,
                                                             V5_12, V5_13, V5_15, V5_17,
                                                             V5_18, V6_1, V6_4, V6_6,
                                                             V6_9, V6_18)}
# What `tdpmmu check` runs with no --kernel: the seed thread's story (the bug, the
# first attempt, the fix); the later designs are asked for by name.
SEED_VERSIONS: tuple[str, ...] = ("v5.10", "v5.10-fix-v1", "v5.11")

# The seed's what-ifs: knob name -> (attribute, choices, good choice, help).
KNOBS: dict[str, tuple[str, dict[str, bool], str, str]] = {
    "new-root": ("list_add_new_root_tail", {"list_add": False, "list_add_tail": True},
                 "list_add", "where get_tdp_mmu_vcpu_root inserts a new root"),
    "next-root": ("yield_safe_next_before_body", {"after-body": False, "before-body": True},
                  "after-body", "when the yield-safe walk reads the next root (v5.11+)"),
    "dirty-log-order": ("dirty_log_flag_after_wrprot",
                        {"flag-first": False, "wrprot-first": True}, "flag-first",
                        "publish the dirty-log flag before or after write-protecting"),
    "tdp_mmu": ("tdp_mmu", {"0": False, "1": True}, "1",
                "the kvm module parameter (also --tdp-mmu); default: the scenario's "
                "[vm] tdp_mmu, else the version's (0 before 5.15): with 0 the direct "
                "roots are the legacy (shadow) MMU's"),
    "KVM_PROVE_MMU": ("CONFIG_KVM_PROVE_MMU", {"n": False, "y": True}, "n",
                      "the Kconfig option (6.6+; also --prove-mmu): y runs the MMU's "
                      "KVM_MMU_WARN_ON checks; n, the kernel's default, compiles them out"),
    "resched": ("resched_policy", {"after-progress": "progress", "always": "always",
                                   "never": "never"}, "after-progress",
                "when a yielding walk yields (always: also again before it moved on; "
                "never: it holds mmu_lock throughout)"),
}


def load_kernel(spec: str) -> type[V5_10]:
    """A built-in version by name, or the kernel class defined in a variant file
    (see :func:`load_kernel_notes`)."""
    return load_kernel_notes(spec)[0]


def load_kernel_notes(spec: str) -> tuple[type[V5_10], list[str]]:
    """A built-in version by name, or the kernel class defined in a variant file,
    with the notes to show the user (which class of the file is used, and why).

    A variant file is Python that imports a built-in version and subclasses
    it, overriding the functions its patch changes::

        from tdpmmu.kvm.versions import V5_11

        class MyPatch(V5_11):
            name = "v5.11+my-patch"
            def kvm_tdp_mmu_zap_gfn_range(self, kvm, start, end):
                ...

    The file's last class that subclasses a built-in version is used.  A name
    the file's classes define that no kernel class has and nothing in the file
    uses is a misspelled override: an error naming the closest kernel name.
    """
    from .variants import VARIANT_MODULE_PREFIX, check_overrides, choice_note
    if spec in BUILTIN:
        return BUILTIN[spec], []
    path = Path(spec)
    if path.suffix != ".py":
        names = ", ".join(BUILTIN)
        raise KernelError(f"unknown kernel {spec!r} (built in: {names}; or a variant .py file)")
    if not path.is_file():
        raise KernelError(f"{spec}: no such variant file")
    mod_name = f"{VARIANT_MODULE_PREFIX}{abs(hash(str(path.resolve())))}"
    try:
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        assert loader_spec is not None and loader_spec.loader is not None
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module
        loader_spec.loader.exec_module(module)
    except SyntaxError as exc:
        where = f"{exc.filename or spec}:{exc.lineno}"
        raise KernelError(f"{where}: syntax error: {exc.msg}") from None
    except BaseException as exc:  # the user's module failed to import (even sys.exit)
        if isinstance(exc, KeyboardInterrupt):
            raise
        what = " ".join(str(exc).split()) or type(exc).__name__
        raise KernelError(f"{spec}: cannot load: {type(exc).__name__}: {what}") from None
    found = [obj for obj in vars(module).values()
             if inspect.isclass(obj) and issubclass(obj, V5_10) and obj not in BUILTIN.values()
             and obj.__module__ == mod_name]
    if not found:
        raise KernelError(f"{spec}: defines no subclass of a built-in kernel version "
                          f"({', '.join(c.__name__ for c in BUILTIN.values())})")
    cls = found[-1]
    if cls.name in BUILTIN:
        cls.name = f"{path.stem}"
    error = check_overrides(cls, list(BUILTIN.values()), spec)
    if error is not None:
        raise KernelError(error)
    note = choice_note(spec, found, cls)
    return cls, [note] if note else []
