"""Promises the later root-lifecycle designs (5.18 to 6.9) make about roots.

Each is checked only on a version whose code promises it: the kernel class
says so with an attribute (never the version's name), and the docstrings
below cite the kernel comment or WARN the promise comes from.  All read the
model like a debugger (:func:`peek`); the calls they judge are seen through
probes on the kernel functions (:mod:`.kprobe`).
"""

from __future__ import annotations

from typing import Any

from ..engine import report, runtime, visible
from ..engine.runtime import current_thread
from ..kvm.shared import root_reads
from .invalidation import leaf_mappings
from .kprobe import install_kprobe
from .peek import peek, roots_on_list
from .tlb import root_invalid

runtime.hide_frames_of(__file__)

PUT = "kvm_tdp_mmu_put_root"
ZAP_ALL_FAST = "kvm_mmu_zap_all_fast"


def _refs(root: Any) -> int | None:
    count = peek(root, "tdp_mmu_root_count")
    return None if count is None else peek(count, "refs")


def _name(root: Any) -> str:
    return str(peek(root, "name"))


class TdpMmuReferencePutOnce:
    """Every invalidated root's TDP MMU reference is put exactly once, and
    only once the root is invalid.

    From 6.4 (edbdb43fc96b) a root starts with a count of two, "one reference
    for the vCPU, and one reference for the TDP MMU itself, which is held
    until the root is invalidated and is ultimately put by
    tdp_mmu_zap_root_work()" (6.4's ``kvm_tdp_mmu_get_vcpu_root_hpa``);
    ``kvm_tdp_mmu_invalidate_all_roots`` gifts that reference to the
    worker.  From 6.6 (0df9dab891ff) "kvm_tdp_mmu_zap_invalidated_roots() is
    gifted the TDP MMU's reference" instead, which 6.9 keeps.  Invalidation
    marks only valid roots ("invalid roots can outlive a memslot update"), so
    the gift is made once per root.

    The kernel class names the function that puts the gifted reference,
    ``tdp_mmu_reference_put_by``; its own calls of ``kvm_tdp_mmu_put_root``
    (not those of the root walks it runs) are the TDP MMU's puts.  Checked:
    such a put finds the root invalid and is the root's first; after VM
    teardown (which invalidates every root) every root that was on
    ``tdp_mmu_roots`` has had exactly one.
    """

    name = "tdp-mmu-reference-put-once"

    def __init__(self, kvm: Any, put_by: str) -> None:
        self.kvm = kvm
        self.put_by = put_by
        self.puts: dict[int, int] = {}  # id(root) -> the TDP MMU's puts
        self.roots: dict[int, Any] = {}  # every root seen on the list
        self.reported: set[Any] = set()

    def probe(self, event: str, f: dict[str, Any]) -> None:
        if event != f"kprobe:{PUT}" or f["caller"] != self.put_by:
            return
        root = f["args"][0]
        self.roots[id(root)] = root
        n = self.puts[id(root)] = self.puts.get(id(root), 0) + 1
        if n > 1:
            self._once(("twice", id(root)), f"{self.name}: {self.put_by} puts the TDP MMU's "
                       f"reference to root {_name(root)} a second time", self.put_by)
        elif not root_invalid(root):
            self._once(("valid", id(root)), f"{self.name}: {self.put_by} puts the TDP MMU's "
                       f"reference to root {_name(root)}, which is still valid", self.put_by)

    def check(self) -> None:
        for root in roots_on_list(self.kvm):
            self.roots.setdefault(id(root), root)

    def final(self) -> None:
        for key, root in self.roots.items():
            if self.puts.get(key, 0) == 0:
                self._once(("never", key), f"{self.name}: the TDP MMU's reference to root "
                           f"{_name(root)} was never put ({self.put_by})", self.put_by)

    def _once(self, key: Any, message: str, function: str) -> None:
        if key not in self.reported:
            self.reported.add(key)
            report("property", message, function)


class NoZeroCountRootUnderWriteLock:
    """While ``mmu_lock`` is held for write, no root on ``tdp_mmu_roots`` has
    a ``tdp_mmu_root_count`` of 0 (except one whose put is running).

    5.18's ``kvm_tdp_mmu_invalidate_all_roots`` takes a reference on every
    valid root under ``WARN_ON_ONCE(!kvm_tdp_mmu_get_root(root))``, and its
    comment says that "Because mmu_lock is held for write, it should be
    impossible to observe a root with zero refcount, i.e. the list of roots
    cannot be stale": a last put (under either lock mode) unlinks the root
    before its holder drops ``mmu_lock``.  The comment and the WARN stay
    until 6.3; 6.4 (edbdb43fc96b) gifts the TDP MMU's own reference instead
    of taking one and drops both, so the promise is checked on the versions
    that say ``promises_no_zero_count_root_under_write_lock`` (5.18, 6.1).
    This is the WARN's condition checked at every step a writer holds the
    lock, not only when an invalidation walks the list.  The 5.10 rule for
    plain ``int`` counts is :class:`NoZeroCountRoot`.
    """

    name = "no-zero-count-root-under-write-lock"

    def __init__(self, kvm: Any) -> None:
        self.kvm = kvm
        self.putting: dict[int, int] = {}  # id(root) -> puts in progress
        self.reported: set[int] = set()

    def probe(self, event: str, f: dict[str, Any]) -> None:
        if event == f"kprobe:{PUT}":
            key = id(f["args"][0])
            self.putting[key] = self.putting.get(key, 0) + 1
        elif event == f"kretprobe:{PUT}":
            key = id(f["args"][0])
            self.putting[key] -= 1

    def check(self) -> None:
        lock = self.kvm.mmu_lock
        if peek(lock, "writer") is None:
            return
        for root in roots_on_list(self.kvm):
            if _refs(root) != 0 or self.putting.get(id(root)) or id(root) in self.reported:
                continue
            self.reported.add(id(root))
            report("property", f"{self.name}: root {_name(root)} is on tdp_mmu_roots with "
                   "tdp_mmu_root_count 0 while mmu_lock is held for write",
                   "kvm_tdp_mmu_invalidate_all_roots")


class InvalidatedRootsZapped:
    """After ``kvm_mmu_zap_all_fast`` returns, no root it invalidated maps
    anything.

    From 5.18 ``kvm_mmu_zap_all_fast`` (``mmu.c``) ends with "Zap the
    invalidated TDP MMU roots, all SPTEs must be dropped before returning to
    the caller, e.g. if the zap is in response to a memslot deletion,
    mmu_notifier callbacks will be unable to reach the SPTEs associated with
    the deleted memslot once the update completes"; the comment is in every
    release to 6.9.  In 5.18-6.5 the zap runs on ``tdp_mmu_zap_wq`` and
    ``kvm_tdp_mmu_zap_invalidated_roots`` waits for it (``flush_workqueue``:
    "Zap all invalidated roots to ensure all SPTEs are dropped before the
    "fast zap" completes"), from 6.6 it zaps them itself, so the promise holds
    at return in both.  5.13-5.17 zap them too, but promise no such thing
    (and until 5.17 a vCPU's fault may still map a page through an invalid
    root): their class does not say ``promises_invalidated_roots_zapped``.

    Judged: the roots on ``tdp_mmu_roots`` that were valid when the call
    began and are invalid when it returns (the ones it invalidated; a root
    5.18's defunct path makes invalid meanwhile is not among them).  The
    check declares reads of those roots, whose SPTE stores are writes of the
    root (``kvm.shared``), so it is ordered against them.
    """

    name = "invalidated-roots-zapped"

    def __init__(self, kvm: Any) -> None:
        self.kvm = kvm
        self.entry: dict[Any, list[Any]] = {}  # thread -> roots valid at entry
        self.reported: set[int] = set()

    def probe(self, event: str, f: dict[str, Any]) -> None:
        if event == f"kprobe:{ZAP_ALL_FAST}":
            self.entry[current_thread()] = [r for r in roots_on_list(self.kvm)
                                            if not root_invalid(r)]
        elif event == f"kretprobe:{ZAP_ALL_FAST}":
            self._returned(self.entry.pop(current_thread(), []))

    def _returned(self, was_valid: list[Any]) -> None:
        kvm = self.kvm
        listed = {id(r) for r in roots_on_list(kvm)}
        roots = [r for r in was_valid if id(r) in listed and root_invalid(r)]
        if not roots:
            return
        visible("property: kvm_mmu_zap_all_fast returned",
                root_reads(peek(r, "root") for r in roots))
        for root in roots:
            for gfn, pfn in leaf_mappings(kvm, root, peek(root, "role").level):
                if id(root) in self.reported:
                    break
                self.reported.add(id(root))
                report("property", f"{self.name}: after kvm_mmu_zap_all_fast returned, "
                       f"invalidated root {_name(root)} still maps gfn {gfn:#x} -> "
                       f"pfn {pfn:#x}", ZAP_ALL_FAST)


def install(kvm: Any, kernel: Any) -> list[Any]:
    """The promised ones of these properties, probes installed and wired."""
    out: list[Any] = []
    if kernel is None:
        return out
    put_by = getattr(kernel, "tdp_mmu_reference_put_by", None)
    if put_by is not None:
        out.append(TdpMmuReferencePutOnce(kvm, put_by))
    if getattr(kernel, "promises_no_zero_count_root_under_write_lock", False):
        out.append(NoZeroCountRootUnderWriteLock(kvm))
    if out:
        install_kprobe(kernel, PUT)
    if getattr(kernel, "promises_invalidated_roots_zapped", False):
        install_kprobe(kernel, ZAP_ALL_FAST)
        out.append(InvalidatedRootsZapped(kvm))
    kvm.probes.extend(p.probe for p in out)
    return out


__all__ = ["InvalidatedRootsZapped", "NoZeroCountRootUnderWriteLock", "TdpMmuReferencePutOnce",
           "install"]
