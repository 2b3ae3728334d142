"""The scenario file format, and its validation.

A scenario is a TOML file::

    name = "seed-bug"
    description = "..."

    [vm]
    vcpus = 1             # number of vCPUs
    root_level = 3        # paging levels (2-4), optional
    manual_dirty_log_protect = false  # KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, optional
    tdp_mmu = 1           # the kvm module parameter, optional (default: the
                          # version's, 0 before 5.15); --tdp-mmu overrides it
    pml = 0               # kvm_intel's pml parameter, optional: 1 logs dirty
                          # pages by the EPT dirty bit and the PML buffer
                          # instead of write protection (TDP MMU only; default 0)
    type = "default"      # KVM_CREATE_VM's type, optional: "default"
                          # (KVM_X86_DEFAULT_VM) or "tdx" (KVM_X86_TDX_VM: no
                          # built-in version models it, so it is rejected)

    [[memslot]]           # the memslots the VM starts with
    id = 0
    as_id = 0             # optional, 0 or 1 (SMM)
    base_gfn = 0
    npages = 4
    hva = 0x100           # host virtual page the slot starts at
    huge = false          # optional: the host backs the slot with huge pages
    log_dirty = false     # optional: dirty logging enabled from the start

    [[setup]]             # optional: actions run to completion before the threads
    op = "vcpu_run"
    vcpu = 0
    guest = ["write 0x1"]

    [[thread]]            # a model thread: a named list of actions
    name = "host"
    actions = [
      { op = "memslot_move", slot = 1, base_gfn = 0x10 },
    ]

    [[thread]]
    name = "vcpu0"
    actions = [ { op = "vcpu_run", vcpu = 0, guest = ["write 0x1", "read 0x2"] } ]

Actions (``op`` and its fields; ``as_id`` defaults to 0 everywhere):

- ``vcpu_run``: vcpu, guest — KVM_RUN until the guest program ends.  Guest
  instructions are ``"read GFN"``, ``"write GFN"``, ``"smi"`` (enter SMM),
  ``"rsm"`` (leave SMM), and L1's nested VMX ones (nested EPT):
  ``"vmlaunch GFN"`` (enter L2 with an EPT pointer at frame GFN),
  ``"vmexit"`` (L2 exits to L1) and ``"invept"`` (L1's global INVEPT).  L2
  makes no memory accesses and does not enter SMM in the model: between a
  ``vmlaunch`` and its ``vmexit`` nothing else may come, and a program that
  enters L2 must leave it.
- ``set_cpuid``: vcpu, cpuid — KVM_SET_CPUID2 with the entries named by the
  integer tag ``cpuid`` (equal tags: identical data).  From v5.17 (5.16's
  ban, 5.17's exception) a vCPU that has run (a ``vcpu_run`` of it before,
  in ``[[setup]]`` or its thread) accepts only the data it has; asking such a
  version for other data is rejected when the check starts (the kernel would
  fail the ioctl with -EINVAL and do nothing).
- ``set_nx_huge_pages``: value — a write of the kvm module parameter
  ``nx_huge_pages`` (true: "force", false: "off"; it starts false); a change
  zaps all roots fast (``kvm_mmu_zap_all_fast`` under ``slots_lock``).
- ``vcpu_unload``: vcpu — ``kvm_mmu_unload`` (as INVPCID does).
- ``memslot_create``: slot, base_gfn, npages, hva, [huge, log_dirty]
- ``memslot_delete``: slot;  ``memslot_move``: slot, base_gfn
- ``dirty_log_enable`` / ``dirty_log_disable`` / ``get_dirty_log``: slot
- ``clear_dirty_log``: slot, [first, npages] — KVM_CLEAR_DIRTY_LOG of pages
  first .. first+npages-1 of the slot (npages 0: to the end), with manual protect
- ``invalidate``: hva, npages — an MMU-notifier invalidation that moves the
  pages to new host frames (``invalidate_range_start``, host PTE change,
  ``invalidate_range_end``)
- ``change_pte``: hva — KSM-style: invalidate start, the page becomes a
  read-only copy, ``change_pte`` (until 6.9: 6.10 removed the notifier),
  invalidate end
- ``age``: hva, npages (``clear_flush_young``);  ``test_age``: hva
- ``zap_all``: ``kvm_mmu_zap_all`` (``kvm_arch_flush_shadow_all``)
- ``zap_gfn_range``: base_gfn, npages — ``kvm_zap_gfn_range`` (as a guest MTRR
  update does): zaps without asking vCPUs to reload
- ``destroy_vm``: the last fd of the VM is closed: waits until every other
  thread that issues VM or vCPU ioctls is done (a vCPU thread has left
  KVM_RUN), then tears the VM down.  At most once, as its thread's last
  action, never in ``[[setup]]``; the mm's events (``invalidate``,
  ``change_pte``, ``age``, ``test_age``, ``zap_all``) may race with it and do
  not reach KVM once its MMU notifier is unregistered
- ``rcu_grace_period``: another CPU completes an RCU grace period and runs the
  ``call_rcu`` callbacks queued before it (frees what waited for one)

Every error names the file, the place (e.g. ``thread 'host' action 2``) and
the reason.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..escape import one_line

MAX_VCPUS = 4
MAX_SCENARIO_BYTES = 1 << 20  # 1 MiB: far beyond any hand-written scenario


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message names file, place and reason."""


@dataclass(frozen=True)
class Action:
    op: str
    args: dict[str, Any]
    where: str  # e.g. "thread 'host' action 2", for messages

    def __str__(self) -> str:
        parts = [self.op] + [f"{k}={_fmt(v)}" for k, v in self.args.items()]
        return " ".join(parts)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return hex(v) if v > 9 else str(v)
    if isinstance(v, list):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return str(v)


@dataclass(frozen=True)
class MemslotSpec:
    id: int
    as_id: int
    base_gfn: int
    npages: int
    hva: int
    huge: bool = False
    log_dirty: bool = False


@dataclass
class Scenario:
    name: str
    description: str
    path: str
    vcpus: int
    root_level: int
    memslots: list[MemslotSpec]
    setup: list[Action]
    threads: list[tuple[str, list[Action]]] = field(default_factory=list)
    manual_dirty_log_protect: bool = False
    tdp_mmu: int | None = None  # None: the kernel version's default
    pml: bool = False  # kvm_intel's pml parameter: dirty logging by PML (see kvm.vmx)
    vm_type: str = "default"  # [vm] type: "default" or "tdx" (see VM_TYPES)


# [vm] type -> the KVM_CREATE_VM type it names (arch/x86/include/uapi/asm/kvm.h).
VM_TYPES = {"default": "KVM_X86_DEFAULT_VM", "tdx": "KVM_X86_TDX_VM"}


# op -> (required fields, optional fields with defaults)
OPS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "vcpu_run": (("vcpu", "guest"), {}),
    "vcpu_unload": (("vcpu",), {}),
    "memslot_create": (("slot", "base_gfn", "npages", "hva"),
                       {"as_id": 0, "huge": False, "log_dirty": False}),
    "memslot_delete": (("slot",), {"as_id": 0}),
    "memslot_move": (("slot", "base_gfn"), {"as_id": 0}),
    "dirty_log_enable": (("slot",), {"as_id": 0}),
    "dirty_log_disable": (("slot",), {"as_id": 0}),
    "get_dirty_log": (("slot",), {"as_id": 0}),
    "clear_dirty_log": (("slot",), {"as_id": 0, "first": 0, "npages": 0}),
    "invalidate": (("hva", "npages"), {}),
    "change_pte": (("hva",), {}),
    "age": (("hva", "npages"), {}),
    "test_age": (("hva",), {}),
    "zap_all": ((), {}),
    "zap_gfn_range": (("base_gfn", "npages"), {}),
    "destroy_vm": ((), {}),
    "rcu_grace_period": ((), {}),
    "set_cpuid": (("vcpu", "cpuid"), {}),
    "set_nx_huge_pages": (("value",), {}),
}
# Host mm events: they reach KVM through its MMU notifier, not through the VM's fd.
MM_OPS = {"invalidate", "change_pte", "age", "test_age", "zap_all"}
# rcu_grace_period: some CPU of the host completes a grace period (no VM fd).
FD_OPS = set(OPS) - MM_OPS - {"destroy_vm", "rcu_grace_period"}
BOOL_FIELDS = {"huge", "log_dirty", "value"}
# A huge SPTE is a 2M leaf one level above the 4K ones.  Real TDP roots are 4 or
# 5 levels and huge leaves stop at level 3 (1G), so a leaf never sits in the
# root page table; with root_level 2 the model's 2M leaf would, and walks that
# rely on that (the zap-all that stays at the root level) would go wrong in ways
# no real kernel can.  So huge memslots need a root of at least 3 levels.
HUGE_MIN_ROOT_LEVEL = 3


def _huge_needs_root_level(err: Any, where: str, root_level: int) -> None:
    if root_level < HUGE_MIN_ROOT_LEVEL:
        raise err(where, f"huge pages need root_level >= {HUGE_MIN_ROOT_LEVEL} (a 2M leaf "
                  f"would sit in the root page table, which no real TDP root allows)")


@dataclass(frozen=True)
class OpMeta:
    """What the sweep (and a reader) needs to know of an op beyond its fields.

    ``thread``: ``"vcpu"`` if the op runs on the thread of the vCPU its
    ``vcpu`` field names (KVM_RUN and what the guest makes the vCPU do),
    ``"host"`` if a VMM or host thread runs it (VM ioctls, MMU-notifier
    events, teardown).  ``since``: the first kernel version that has it.
    ``sweep``: the value domains (see :mod:`tdpmmu.sweep`) its fields are drawn
    from; ``None`` means one domain per required field, named as the field.
    """

    thread: str
    since: str = "v5.10"
    sweep: tuple[str, ...] | None = None


OP_META: dict[str, OpMeta] = {
    "vcpu_run": OpMeta("vcpu"),
    "vcpu_unload": OpMeta("vcpu"),
    "memslot_create": OpMeta("host", sweep=("new_memslot",)),
    "memslot_delete": OpMeta("host"),
    "memslot_move": OpMeta("host", sweep=("slot", "free_gfn")),
    "dirty_log_enable": OpMeta("host"),
    "dirty_log_disable": OpMeta("host"),
    "get_dirty_log": OpMeta("host"),
    "clear_dirty_log": OpMeta("host"),
    "invalidate": OpMeta("host", sweep=("hva_range",)),
    "change_pte": OpMeta("host"),
    "age": OpMeta("host", sweep=("hva_range",)),
    "test_age": OpMeta("host"),
    "zap_all": OpMeta("host"),
    "zap_gfn_range": OpMeta("host", sweep=("gfn_range",)),
    "destroy_vm": OpMeta("host"),
    "rcu_grace_period": OpMeta("host"),
    # set_cpuid is not swept: most orders of it would be refused from v5.17.
    "set_cpuid": OpMeta("vcpu"),
    "set_nx_huge_pages": OpMeta("host"),
}


def op_meta(op: str) -> OpMeta:
    """An op's metadata; an op without an entry runs on a vCPU's thread if it
    names a vCPU, else on a host thread, and exists from the first version."""
    meta = OP_META.get(op)
    if meta is None:
        meta = OpMeta("vcpu" if "vcpu" in OPS[op][0] else "host")
    return meta

GUEST_KINDS = {"read": True, "write": True, "smi": False, "rsm": False, "vmlaunch": True,
               "vmexit": False, "invept": False}


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file (at most :data:`MAX_SCENARIO_BYTES`)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            # Read one byte past the cap, so /dev/zero or a huge file stops there.
            raw = f.read(MAX_SCENARIO_BYTES + 1)
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_SCENARIO_BYTES:
        raise ScenarioError(f"{path}: larger than {MAX_SCENARIO_BYTES} bytes: not a "
                            "scenario file")
    try:
        text = raw.decode("utf-8")  # TOML is UTF-8
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {one_line(str(exc))}") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise ScenarioError(f"{path}: not a scenario: arrays or tables nested too "
                            "deeply") from None
    return parse_scenario(data, str(path))


def _name(value: Any, err: Any, where: str, what: str) -> str:
    """A name shown in reports and tables: a non-empty string, no control characters."""
    if not isinstance(value, str) or not value:
        raise err(where, f"missing '{what}'" if value is None else
                  f"'{what}' must be a non-empty string")
    if not value.isprintable():
        raise err(where, f"'{what}' {one_line(repr(value))} contains a control character")
    return value


def parse_scenario(data: dict[str, Any], path: str) -> Scenario:
    def err(where: str, why: str) -> ScenarioError:
        return ScenarioError(f"{path}: {where}: {why}")

    known_top = {"name", "description", "vm", "memslot", "setup", "thread"}
    for key in data:
        if key not in known_top:
            raise err(f"key '{key}'", f"unknown (expected one of: {', '.join(sorted(known_top))})")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise err("name", "missing or not a string")
    name = _name(name, err, "name", "name")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise err("description", "must be a string")

    vm = data.get("vm", {})
    if not isinstance(vm, dict):
        raise err("[vm]", "must be a table")
    for key in vm:
        if key not in ("vcpus", "root_level", "manual_dirty_log_protect", "tdp_mmu", "pml",
                       "type"):
            raise err(f"[vm] key '{key}'", "unknown (expected vcpus, root_level, "
                      "manual_dirty_log_protect, tdp_mmu, pml, type)")
    vcpus = _int(vm.get("vcpus", 1), err, "[vm] vcpus", 1, MAX_VCPUS)
    root_level = _int(vm.get("root_level", 3), err, "[vm] root_level", 2, 4)
    manual = _bool(vm.get("manual_dirty_log_protect", False), err,
                   "[vm] manual_dirty_log_protect")
    tdp_mmu = None if "tdp_mmu" not in vm else _int(vm["tdp_mmu"], err, "[vm] tdp_mmu", 0, 1)
    pml = bool(_int(vm.get("pml", 0), err, "[vm] pml", 0, 1))
    vm_type = vm.get("type", "default")
    if vm_type not in VM_TYPES:
        raise err("[vm] type", f"expected one of {', '.join(map(repr, VM_TYPES))}, "
                  f"not {one_line(repr(vm_type))}")
    max_gfn = 1 << (2 * root_level)

    memslots = []
    raw_slots = data.get("memslot", [])
    if not isinstance(raw_slots, list):
        raise err("memslot", "must be an array of tables ([[memslot]])")
    seen = set()
    for i, raw in enumerate(raw_slots):
        where = f"memslot {i}"
        if not isinstance(raw, dict):
            raise err(where, "must be a table")
        allowed = {"id", "as_id", "base_gfn", "npages", "hva", "huge", "log_dirty"}
        for key in raw:
            if key not in allowed:
                expected = ", ".join(sorted(allowed))
                raise err(f"{where} key '{key}'", f"unknown (expected {expected})")
        for key in ("id", "base_gfn", "npages", "hva"):
            if key not in raw:
                raise err(where, f"missing '{key}'")
        spec = MemslotSpec(
            id=_int(raw["id"], err, f"{where} id", 0, 31),
            as_id=_int(raw.get("as_id", 0), err, f"{where} as_id", 0, 1),
            base_gfn=_int(raw["base_gfn"], err, f"{where} base_gfn", 0, max_gfn - 1),
            npages=_int(raw["npages"], err, f"{where} npages", 1, max_gfn),
            hva=_int(raw["hva"], err, f"{where} hva", 0, 1 << 40),
            huge=_bool(raw.get("huge", False), err, f"{where} huge"),
            log_dirty=_bool(raw.get("log_dirty", False), err, f"{where} log_dirty"))
        if spec.huge:
            _huge_needs_root_level(err, f"{where} huge", root_level)
        if spec.base_gfn + spec.npages > max_gfn:
            raise err(where, f"gfns {spec.base_gfn:#x}+{spec.npages} exceed the guest's "
                      f"{max_gfn} gfns (root_level {root_level})")
        if (spec.as_id, spec.id) in seen:
            raise err(where, f"slot id {spec.id} is defined twice in as_id {spec.as_id}")
        for other in memslots:
            if other.as_id == spec.as_id and spec.base_gfn < other.base_gfn + other.npages \
                    and other.base_gfn < spec.base_gfn + spec.npages:
                raise err(where, f"overlaps memslot {other.id}")
        seen.add((spec.as_id, spec.id))
        memslots.append(spec)

    ctx = (err, vcpus, max_gfn)
    setup_raw = data.get("setup", [])
    if not isinstance(setup_raw, list):
        raise err("setup", "must be an array of tables ([[setup]])")
    setup = [_action(a, f"setup action {i}", ctx) for i, a in enumerate(setup_raw)]

    threads_raw = data.get("thread", [])
    if not isinstance(threads_raw, list) or not threads_raw:
        raise err("thread", "at least one [[thread]] is needed")
    threads = []
    names = set()
    for i, raw in enumerate(threads_raw):
        if not isinstance(raw, dict):
            raise err(f"thread {i}", "must be a table")
        tname = _name(raw.get("name"), err, f"thread {i}", "name")
        if tname in names:
            raise err(f"thread '{tname}'", "defined twice")
        names.add(tname)
        for key in raw:
            if key not in ("name", "actions"):
                raise err(f"thread '{tname}' key '{key}'", "unknown (expected name, actions)")
        actions = raw.get("actions")
        if not isinstance(actions, list) or not actions:
            raise err(f"thread '{tname}'", "needs a non-empty 'actions' array")
        threads.append((tname, [_action(a, f"thread '{tname}' action {j}", ctx)
                                for j, a in enumerate(actions)]))
    _check_teardown(setup, threads, err)
    vcpu_owner: dict[int, str] = {}
    for tname, actions in threads:
        for a in actions:
            if "vcpu" in a.args:
                owner = vcpu_owner.setdefault(a.args["vcpu"], tname)
                if owner != tname:
                    raise err(a.where, f"vcpu {a.args['vcpu']} is already run by thread "
                              f"'{owner}' (a vCPU belongs to one thread)")
    _check_sequences(memslots, setup, threads, err)
    return Scenario(name=name, description=description.strip(), path=path, vcpus=vcpus,
                    root_level=root_level, memslots=memslots, setup=setup, threads=threads,
                    manual_dirty_log_protect=manual, tdp_mmu=tdp_mmu, pml=pml,
                    vm_type=vm_type)


def _check_sequences(memslots: list[MemslotSpec], setup: list[Action],
                     threads: list[tuple[str, list[Action]]], err: Any) -> None:
    """Reject action sequences no userspace would issue: an op on a memslot that
    this thread itself deleted before; creating a memslot that exists for this
    thread; moving a slot to where this thread put it.  (Teardown has its own
    rules, in :func:`_check_teardown`.)

    Each thread is judged on what it alone knows (the VM's memslots, what
    setup did, its own earlier actions): another thread may delete or create a
    slot concurrently, and then the ioctl fails at run time as in the kernel.
    """
    initial = {(m.as_id, m.id): m.base_gfn for m in memslots}
    for tname, actions in [("setup", setup), *threads]:
        slots = dict(initial)  # (as_id, id) -> base_gfn, as this thread knows them
        deleted: dict[tuple[int, int], str] = {}
        for a in actions:
            if "slot" not in a.args:
                continue
            key = (a.args.get("as_id", 0), a.args["slot"])
            if a.op == "memslot_create":
                if key in slots:
                    raise err(a.where, f"memslot {key[1]} (as_id {key[0]}) already exists")
                slots[key] = a.args["base_gfn"]
                deleted.pop(key, None)
                continue
            if key in deleted:
                raise err(a.where, f"memslot {key[1]} was deleted by {deleted[key]}")
            if a.op == "memslot_delete":
                deleted[key] = a.where
                slots.pop(key, None)
            elif a.op == "memslot_move":
                if slots.get(key) == a.args["base_gfn"]:
                    raise err(a.where, f"memslot {key[1]} is already at gfn "
                              f"{a.args['base_gfn']:#x}")
                slots[key] = a.args["base_gfn"]
        if tname == "setup":
            initial = slots


def holds_vm_fd(actions: list[Action]) -> bool:
    """Whether a thread keeps the VM alive while it runs: it issues VM or vCPU
    ioctls (which need the VM's fd) and is not the one that closes it last."""
    return any(a.op in FD_OPS for a in actions) and not any(
        a.op == "destroy_vm" for a in actions)


def _check_teardown(setup: list[Action], threads: list[tuple[str, list[Action]]],
                    err: Any) -> None:
    """Reject teardowns no real VM can have.  The VM is destroyed when its last
    fd is closed: once, by one thread, after that thread's own ioctls and after
    every other thread's (``destroy_vm`` waits for those threads); only the mm's
    notifier events may race with it."""
    for a in setup:
        if a.op == "destroy_vm":
            raise err(a.where, "destroy_vm cannot be a setup action: the threads would "
                      "run on a destroyed VM")
    destroyer = None
    for tname, actions in threads:
        for j, a in enumerate(actions):
            if a.op != "destroy_vm":
                continue
            if destroyer is not None:
                raise err(a.where, f"the VM is already destroyed by thread '{destroyer}' "
                          "(a VM is destroyed once)")
            destroyer = tname
            if j + 1 < len(actions):
                raise err(actions[j + 1].where, f"comes after destroy_vm ({a.where}): "
                          "nothing runs on a VM after its teardown")


def _action(raw: Any, where: str, ctx: tuple) -> Action:
    err, vcpus, max_gfn = ctx
    if not isinstance(raw, dict):
        raise err(where, "must be a table like { op = \"...\", ... }")
    op = raw.get("op")
    if not isinstance(op, str) or op not in OPS:
        raise err(where, f"unknown op {op!r} (known: {', '.join(OPS)})")
    required, optional = OPS[op]
    args: dict[str, Any] = {}
    for key in raw:
        if key != "op" and key not in required and key not in optional:
            allowed = ", ".join(required + tuple(optional)) or "none"
            raise err(f"{where} ({op})", f"unknown field '{key}' (allowed: {allowed})")
    for key in required:
        if key not in raw:
            raise err(f"{where} ({op})", f"missing field '{key}'")
    for key in required + tuple(optional):
        value = raw.get(key, optional.get(key))
        if key == "guest":
            args[key] = _guest(value, f"{where} ({op}) guest", err, max_gfn)
        elif key in BOOL_FIELDS:
            args[key] = _bool(value, err, f"{where} ({op}) {key}")
        elif key == "vcpu":
            args[key] = _int(value, err, f"{where} ({op}) vcpu", 0, vcpus - 1)
        elif key in ("base_gfn",):
            args[key] = _int(value, err, f"{where} ({op}) {key}", 0, max_gfn - 1)
        elif key == "npages":
            lo = 0 if op == "clear_dirty_log" else 1  # 0: to the end of the slot
            args[key] = _int(value, err, f"{where} ({op}) {key}", lo, max_gfn)
        elif key == "as_id":
            args[key] = _int(value, err, f"{where} ({op}) {key}", 0, 1)
        else:
            args[key] = _int(value, err, f"{where} ({op}) {key}", 0, 1 << 40)
    if op == "memslot_create" and args["huge"]:
        _huge_needs_root_level(err, f"{where} ({op}) huge", max_gfn.bit_length() // 2)
    if op == "memslot_create" and args["base_gfn"] + args["npages"] > max_gfn:
        raise err(f"{where} ({op})", f"gfns {args['base_gfn']:#x}+{args['npages']} exceed "
                  f"the guest's {max_gfn} gfns")
    return Action(op, args, where)


def _guest(value: Any, where: str, err: Any, max_gfn: int) -> list[tuple[str, int]]:
    if not isinstance(value, list) or not value:
        raise err(where, "must be a non-empty array of instructions like \"write 0x1\"")
    out = []
    for i, ins in enumerate(value):
        if not isinstance(ins, str):
            raise err(f"{where}[{i}]", "must be a string like \"write 0x1\"")
        parts = ins.split()
        kind = parts[0] if parts else ""
        if kind not in GUEST_KINDS:
            raise err(f"{where}[{i}]", f"unknown instruction {ins!r} (read GFN, write GFN, "
                      "smi, rsm, vmlaunch GFN, vmexit, invept)")
        if GUEST_KINDS[kind]:
            if len(parts) != 2:
                raise err(f"{where}[{i}]", f"{kind} takes one gfn, e.g. \"{kind} 0x1\"")
            try:
                gfn = int(parts[1], 0)
            except ValueError:
                raise err(f"{where}[{i}]", f"bad gfn {parts[1]!r}") from None
            if not 0 <= gfn < max_gfn:
                raise err(f"{where}[{i}]", f"gfn {gfn:#x} is outside the guest's {max_gfn} gfns")
            out.append((kind, gfn))
        else:
            if len(parts) != 1:
                raise err(f"{where}[{i}]", f"{kind} takes no operand")
            out.append((kind, 0))
    _check_nesting(out, where, err)
    return out


def _check_nesting(program: list[tuple[str, int]], where: str, err: Any) -> None:
    """L2 (between ``vmlaunch`` and ``vmexit``) runs no instruction of the
    model, and a program leaves L2 before it ends (see the module docstring)."""
    in_l2 = None
    for i, (kind, _gfn) in enumerate(program):
        if kind == "vmlaunch":
            if in_l2 is not None:
                raise err(f"{where}[{i}]", f"vmlaunch in L2 (entered at [{in_l2}]): nested "
                          "guests of L2 are not modelled")
            in_l2 = i
        elif kind == "vmexit":
            if in_l2 is None:
                raise err(f"{where}[{i}]", "vmexit without a vmlaunch before it (the vCPU "
                          "is in L1)")
            in_l2 = None
        elif in_l2 is not None:
            raise err(f"{where}[{i}]", f"{kind} in L2 (entered at [{in_l2}]): L2 makes no "
                      "memory accesses, SMIs or INVEPTs in the model; put a vmexit first")
    if in_l2 is not None:
        raise err(f"{where}[{in_l2}]", "vmlaunch without a vmexit after it: the program must "
                  "return to L1")


def check_for_kernel(scenario: Scenario, set_cpuid_after_run: str, kernel: str) -> None:
    """Reject what ``kernel`` refuses: with ``set_cpuid_after_run ==
    "identical"`` (5.17+), a ``set_cpuid`` of a vCPU that has run, with other
    data than the vCPU has.  Judged on the vCPU's own sequence (setup, then
    the one thread that runs it), which is all the kernel's check
    (``kvm_vcpu_has_run``, ``kvm_cpuid_check_equal``) depends on."""
    if set_cpuid_after_run != "identical":
        return
    threads = {}
    for _tname, actions in scenario.threads:
        for a in actions:
            if "vcpu" in a.args:
                threads[a.args["vcpu"]] = actions
    for vcpu in range(scenario.vcpus):
        has_run, cpuid = False, None
        for a in scenario.setup + threads.get(vcpu, []):
            if a.args.get("vcpu") != vcpu:
                continue
            if a.op == "vcpu_run":
                has_run = True
            elif a.op == "set_cpuid":
                if has_run and a.args["cpuid"] != cpuid:
                    before = "no CPUID" if cpuid is None else f"cpuid {cpuid}"
                    raise ScenarioError(
                        f"{scenario.path}: {a.where} (set_cpuid): {kernel} refuses "
                        f"KVM_SET_CPUID after KVM_RUN unless the data is identical (vcpu "
                        f"{vcpu} has {before}, asked for cpuid {a.args['cpuid']}; "
                        "the ioctl fails with -EINVAL): set it before the vCPU's first "
                        "vcpu_run, or repeat the same cpuid")
                if not has_run:
                    cpuid = a.args["cpuid"]


def _int(value: Any, err: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise err(where, f"must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise err(where, f"{value} is out of range {lo}..{hi}")
    return value


def _bool(value: Any, err: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise err(where, f"must be true or false, got {value!r}")
    return value
