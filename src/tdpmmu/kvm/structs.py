"""The kernel structures the model works on: ``struct kvm``, ``kvm_vcpu``,
``kvm_mmu_page``, memslots, and the host side (user page tables, MMU notifier).

Code lives in the version classes (``tdp_mmu.py``, ``mmu.py``, ...); these are
only data, with the kernel's field names.  Shared words that other threads read
without ``mmu_lock`` are engine ``Var``s or objects announced through
:mod:`tdpmmu.kvm.shared`; everything else is protected by ``mmu_lock``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..engine import Var
from ..kernel import list_head, rcu_head, spinlock_t
from ..kernel.guard import Guarded, check_write
from ..kernel.list import zeroed_list_head
from . import shared
from .spte import PT64_ENT_PER_PAGE

INVALID_PAGE = -1
KVM_ADDRESS_SPACE_NUM = 2
KVM_MEM_LOG_DIRTY_PAGES = 1 << 0
KVM_MEM_READONLY = 1 << 1
KVM_MEMSLOT_INVALID = 1 << 16

KVM_REQ_TLB_FLUSH = 0
KVM_REQ_MMU_RELOAD = 1
KVM_REQ_TLB_FLUSH_CURRENT = 2
KVM_REQ_MMU_FREE_OBSOLETE_ROOTS = 3  # 5.18 (527d5cd7eece): replaces MMU_RELOAD
KVM_REQ_UPDATE_CPU_DIRTY_LOGGING = 4  # 5.12 (a85863c2ec55): PML on/off per vCPU
REQUEST_NAMES = {KVM_REQ_TLB_FLUSH: "TLB_FLUSH", KVM_REQ_MMU_RELOAD: "MMU_RELOAD",
                 KVM_REQ_TLB_FLUSH_CURRENT: "TLB_FLUSH_CURRENT",
                 KVM_REQ_MMU_FREE_OBSOLETE_ROOTS: "MMU_FREE_OBSOLETE_ROOTS",
                 KVM_REQ_UPDATE_CPU_DIRTY_LOGGING: "UPDATE_CPU_DIRTY_LOGGING"}
# Model only, not a KVM request: kvm_vcpu_kick's IPI, pending until the vCPU's
# next VM exit takes it (see kvm_main.KvmMain.kvm_vcpu_kick).
KVM_REQUEST_KICK = 1 << 31


@dataclass(frozen=True)
class kvm_mmu_page_role:
    """The role bits that tell roots apart: a vCPU reuses a root whose word matches."""

    level: int
    smm: int = 0
    direct: int = 1
    access: int = 7
    guest_mode: int = 0
    invalid: int = 0
    is_mirror: int = 0  # 6.14+: a TDX mirror root (never set: no TDX VMs in the model)

    @property
    def word(self) -> int:
        return (self.level | self.smm << 4 | self.direct << 5 | self.access << 6
                | self.guest_mode << 9 | self.invalid << 10 | self.is_mirror << 11)

    def with_level(self, level: int) -> kvm_mmu_page_role:
        return replace(self, level=level)

    def __str__(self) -> str:
        bits = [f"L{self.level}"]
        if self.smm:
            bits.append("smm")
        if self.guest_mode:
            bits.append("guest")
        if self.invalid:
            bits.append("invalid")
        if self.is_mirror:
            bits.append("mirror")
        return ",".join(bits)


class kvm_mmu_page:
    """A page-table page: ``spt`` holds its SPTEs; ``pfn`` is its host page frame."""

    # Walks declare the SPTE words they read, not the pages holding them (see
    # kvm.shared): freeing a page writes the words of its entries.
    __slab_reached_through__ = staticmethod(shared.page_words)

    def __init__(self) -> None:
        # Zero-filled like the kernel's (mmu_page_header_cache has __GFP_ZERO):
        # NULL pointers until the page goes on a list.
        self.link = zeroed_list_head(self)
        self.tdp_mmu_page = False
        self.root_count = 0
        self.role: kvm_mmu_page_role | None = None
        self.gfn = 0
        self.spt: list[int] = [0] * PT64_ENT_PER_PAGE
        self.pfn = 0
        self.lpage_disallowed = False
        self.name = "?"  # a stable label for traces: r0, r1, ... for roots, p0, ... for others
        self.root: Any = None  # the root whose paging structure holds this page
        self.version = 0  # bumped by SPTE stores while it is a tree's one word (kvm.shared)
        self.spte_words: dict | None = None  # a root's SPTE words (kvm.shared)
        self.rcu_head = rcu_head(self)  # 5.12+: page tables are freed through call_rcu
        self.mmu_valid_gen = 0  # the legacy MMU's generation stamp (is_obsolete_sp)
        self.parent_ptes: list[Any] = []  # the legacy MMU's parent SPTEs of this page
        self.tdp_mmu_scheduled_root_to_zap = False  # 6.6+: flagged by the invalidation

    def __repr__(self) -> str:
        return f"<kvm_mmu_page {self.name}>"

    def __setattr__(self, name: str, value: Any) -> None:
        # Once on a guarded list (published), the page's protected fields are
        # written under the list's lock (see kernel.guard and lock_contract).
        if name in _PAGE_GUARDED:
            link = self.__dict__.get("link")
            g = link.guard if link is not None else None
            if g is not None:
                fg = g.fields.get(name)
                if fg is not None:
                    check_write(fg, f"{self.name}->{name}")
        object.__setattr__(self, name, value)


_PAGE_GUARDED = frozenset({"root_count", "role"})


@dataclass
class kvm_memory_slot:
    id: int
    as_id: int
    base_gfn: int
    npages: int
    userspace_addr: int  # in pages of the host address space, for simplicity
    flags: int = 0
    dirty_bitmap: list[int] | None = None
    huge: bool = False  # asked for: the host backs this slot with huge pages (see HostMM)
    # arch.rmap: the legacy MMU's reverse maps, (level, gfn) -> sptes; a copy of
    # the slot shares them, as the kernel's memcpy'd pointers do.
    rmap: dict[tuple[int, int], list[Any]] = field(default_factory=dict)

    def contains(self, gfn: int) -> bool:
        return self.base_gfn <= gfn < self.base_gfn + self.npages

    def copy(self) -> kvm_memory_slot:
        """``kvm_dup_memslots`` copies the structs; the dirty bitmap is shared."""
        return replace(self)


@dataclass
class kvm_memslots:
    """One address space's memslot array; a new one is installed for every change."""

    generation: int
    slots: list[kvm_memory_slot] = field(default_factory=list)

    def id_to_memslot(self, slot_id: int) -> kvm_memory_slot | None:
        for s in self.slots:
            if s.id == slot_id:
                return s
        return None


KVM_MMU_NUM_PREV_ROOTS = 3


class kvm_mmu_root_info:
    """A cached root (``struct kvm_mmu_root_info``): the root page's ``hpa`` and the
    guest page-table pointer (``pgd``: CR3, or an EPTP for a nested EPT root)
    it shadows.  ``root_hpa`` aliases ``hpa`` so that ``mmu_free_root_page``,
    which takes a ``hpa_t *`` in the kernel, can be given a cache slot or the
    MMU itself."""

    def __init__(self, hpa: int = INVALID_PAGE, pgd: int = 0) -> None:
        self.hpa = hpa
        self.pgd = pgd

    @property
    def root_hpa(self) -> int:
        return self.hpa

    @root_hpa.setter
    def root_hpa(self, value: int) -> None:
        self.hpa = value

    def copy(self) -> kvm_mmu_root_info:
        return kvm_mmu_root_info(self.hpa, self.pgd)

    def __repr__(self) -> str:
        return f"<root_info hpa={self.hpa:#x} pgd={self.pgd:#x}>"


class kvm_mmu:
    """``struct kvm_mmu``: ``vcpu->arch.root_mmu`` (L1's, direct with TDP) or
    ``vcpu->arch.guest_mmu`` (nested EPT: L2's shadow-EPT roots, not direct).

    ``root_hpa``/``root_pgd`` are the current root (6.1's ``mmu->root``),
    ``prev_roots`` the cache of earlier ones (each holds a root reference, as
    the current one does).  ``mmu_role`` is the role of the roots this MMU
    makes (5.10's ``mmu_role.base``, 6.1's ``root_role``); ``direct_map`` is
    5.10's name of ``root_role.direct``.  ``root_level`` is the guest's paging
    level this MMU walks: the model's guests are 64-bit, so it is 4-level-like
    (``PT64_ROOT_4LEVEL``) once the MMU is initialised."""

    def __init__(self, name: str = "root_mmu", direct_map: bool = True) -> None:
        self.name = name
        self.root_hpa = INVALID_PAGE
        self.root_pgd = 0
        self.mirror_root_hpa = INVALID_PAGE  # 6.14+: a TDX VM's mirror root (never valid here)
        self.shadow_root_level = 0
        self.root_level = 0
        self.direct_map = direct_map
        self.mmu_role: Any = None
        self.prev_roots = [kvm_mmu_root_info() for _ in range(KVM_MMU_NUM_PREV_ROOTS)]

    @property
    def root(self) -> kvm_mmu_root_info:
        """6.1's ``mmu->root`` as a value (read it; assign through ``set_root``)."""
        return kvm_mmu_root_info(self.root_hpa, self.root_pgd)

    def set_root(self, info: kvm_mmu_root_info) -> None:
        self.root_hpa = info.hpa
        self.root_pgd = info.pgd


class Tlb:
    """A vCPU's TLB for guest-physical translations: gfn -> (pfn, writable).

    Shared: the vCPU fills it and reads it, remote flushes empty it.
    """

    def __init__(self, name: str) -> None:
        self.entries: dict[int, tuple[int, bool]] = {}
        self.version = 0
        self.name = name


class kvm_vcpu:
    def __init__(self, kvm: Any, vcpu_id: int) -> None:
        self.kvm = kvm
        self.vcpu_id = vcpu_id
        self.requests = Var(0, name=f"vcpu{vcpu_id}->requests")
        # vcpu->arch.root_mmu, vcpu->arch.guest_mmu and the current one,
        # vcpu->arch.mmu (guest_mmu while L2 runs with nested EPT).
        self.root_mmu = kvm_mmu("root_mmu")
        self.guest_mmu = kvm_mmu("guest_mmu", direct_map=False)
        self.mmu = self.root_mmu
        self.arch_mmu = self.root_mmu
        self.tlb = Tlb(f"vcpu{vcpu_id}->tlb")
        self.smm = 0
        self.guest_mode = 0
        self.srcu_idx = None
        self.fault_retry_spin = False
        self.mutex: Any = None  # vcpu->mutex, made with the VM's other locks
        self.nested_eptp = 0  # vmcs12's EPT pointer while L2 runs (nested EPT)
        self.last_vmentry_cpu = -1  # 5.16+'s kvm_vcpu_has_run(): != -1 once it ran
        self.cpuid: Any = None  # the KVM_SET_CPUID data (a tag), None before any
        self.pml_buffer: list[int] = []  # gpas the CPU logged (PML), flushed at VM exit
        self.pml_enabled = False  # SECONDARY_EXEC_ENABLE_PML in the vCPU's VMCS
        self.update_vmcs01_cpu_dirty_logging = False  # 5.12+: deferred while L2 runs

    @property
    def mmu_role(self) -> Any:
        """The role of L1's direct roots: ``vcpu->arch.root_mmu``'s."""
        return self.root_mmu.mmu_role

    @mmu_role.setter
    def mmu_role(self, role: Any) -> None:
        self.root_mmu.mmu_role = role


class kvm_arch(Guarded):
    def __init__(self) -> None:
        self.tdp_mmu_enabled = False  # set by kvm_mmu_init_tdp_mmu when tdp_mmu=1
        # 5.12+: memslots with dirty logging on (6.3 moved it to
        # kvm->nr_memslots_dirty_logging, ee661d8ea94e; one field in the model).
        self.cpu_dirty_logging_count = 0
        self.tdp_mmu_roots = list_head(None)
        self.tdp_mmu_pages = list_head(None)
        self.mmu_valid_gen = 0
        self.vm_type = 0  # KVM_X86_DEFAULT_VM (KVM_CREATE_VM's type)


class HostMM:
    """The host process's page tables for guest memory: hva page -> pfn.

    An MMU-notifier invalidation changes an hva's pfn (page migration, swap,
    munmap) between ``invalidate_range_start`` and ``_end``.
    """

    def __init__(self) -> None:
        self.ptes: dict[int, Var] = {}
        self.next_pfn = 0x100
        self.old_pfns: dict[int, list[int]] = {}  # hva -> pfns it was moved away from
        self.huge_frames: set[int] = set()  # frames of the huge pages the host maps whole
        # pfn -> (task, call chain) of the host's release of a frame it took away
        # from an hva: from then on the frame is not the VM's (see properties.host_frames).
        self.released: dict[int, tuple[str, list[str]]] = {}

    def map_huge(self, hva: int, npages: int) -> None:
        """Back ``hva .. hva+npages`` with huge pages (THP) where whole aligned
        groups of pages fit: each group gets contiguous, aligned frames."""
        from .spte import KVM_PAGES_PER_HPAGE, PG_LEVEL_2M
        group = KVM_PAGES_PER_HPAGE(PG_LEVEL_2M)
        first = -(-hva // group) * group
        for start in range(first, hva + npages - group + 1, group):
            self.next_pfn = -(-self.next_pfn // group) * group
            for i in range(group):
                pfn = self.alloc_pfn()
                self.ptes[start + i] = Var((pfn, True), name=f"host pte {start + i:#x}")
                self.huge_frames.add(pfn)
        for h in range(hva, hva + npages):
            self.pte(h)

    def is_huge_frame(self, pfn: int) -> bool:
        return pfn in self.huge_frames

    def pte(self, hva: int) -> Var:
        """The host PTE of an hva page: a shared ``(pfn, writable)`` word."""
        v = self.ptes.get(hva)
        if v is None:
            v = self.ptes[hva] = Var((self.alloc_pfn(), True), name=f"host pte {hva:#x}")
        return v

    def replace(self, hva: int, writable: bool) -> tuple[int, bool]:
        """The host moves an hva to a new page frame (one visible store)."""
        pte = self.pte(hva)
        old_pfn = pte.load()[0]
        if old_pfn in self.huge_frames:  # the huge page is split first
            from .spte import KVM_PAGES_PER_HPAGE, PG_LEVEL_2M
            base = old_pfn & ~(KVM_PAGES_PER_HPAGE(PG_LEVEL_2M) - 1)
            self.huge_frames.difference_update(range(base, base + KVM_PAGES_PER_HPAGE(2)))
        new = (self.alloc_pfn(), writable)
        pte.store(new)
        self.old_pfns.setdefault(hva, []).append(old_pfn)
        from ..kernel import callsite
        self.released[old_pfn] = (callsite.task_name(), callsite.call_chain())
        return new

    def alloc_pfn(self) -> int:
        pfn = self.next_pfn
        self.next_pfn += 1
        return pfn


class kvm(Guarded):
    """``struct kvm`` with the fields the TDP MMU paths use (and the model's
    ghost words, which only properties read)."""

    def ghost(self, as_id: int, gfn: int) -> Any:
        """The ghost word of guest page ``gfn`` in address space ``as_id``."""
        from .shared import Ghost
        g = self.ghosts.get((as_id, gfn))
        if g is None:
            g = self.ghosts[(as_id, gfn)] = Ghost(f"guest page {as_id}:{gfn:#x}")
        return g

    def __init__(self, nr_vcpus: int, root_level: int) -> None:
        self.mmu_lock = spinlock_t("kvm->mmu_lock")
        self.slots_lock_owner = None
        self.arch = kvm_arch()
        self.memslots = [Var(kvm_memslots(generation=0), name=f"kvm->memslots[{i}]")
                         for i in range(KVM_ADDRESS_SPACE_NUM)]
        self.mmu_notifier_seq = Var(0, name="kvm->mmu_notifier_seq")
        self.mmu_notifier_count = 0  # protected by mmu_lock
        self.mmu_notifier_range_start = 0  # 5.12+: the hvas being invalidated
        self.mmu_notifier_range_end = 0
        self.tlbs_dirty = 0
        self.manual_dirty_log_protect = False  # KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2
        self.enable_pml = False  # kvm_intel's pml parameter (see vmx.py), one VM per run
        self.root_level = root_level
        self.vcpus = [kvm_vcpu(self, i) for i in range(nr_vcpus)]
        self.mm = HostMM()
        self.phys: dict[int, kvm_mmu_page] = {}  # pfn -> page-table page (page_private)
        self.freed_phys: dict[int, str] = {}  # pfn of a freed page-table page -> its name
        self.next_pt_pfn = 0x8000
        self.nr_roots_made = 0
        self.nr_pages_made = 0
        self.destroyed = False
        self.users_count = 1  # the VM's file; kvm_put_kvm drops it to 0 before kvm_destroy_vm
        self.created_vcpus = nr_vcpus
        self.vm_bugged = False  # kvm_vm_bugged (KVM_BUG_ON)
        self.vcpu_threads_running = Var(0, name="vCPU threads in KVM_RUN")
        self.ghosts: dict[tuple[int, int], Any] = {}  # (as_id, gfn) -> shared.Ghost
        self.probes: list[Any] = []
        self.slab: Any = None
        self.mmu_page_header_cache: Any = None
