"""The actions a thread may run in a sweep, from the format's op table.

Each op's :class:`~tdpmmu.scenarios.format.OpMeta` names the value domains its
fields are drawn from; a domain is a function of the VM giving small dicts of
field values.  A new op whose fields use the domains below joins the sweep
without code here; a new kind of field needs one domain.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..scenarios.format import OPS, Scenario, ScenarioError, op_meta, parse_scenario

# The small default VM: 2 vCPUs, 2 one-page memslots, two paging levels (the
# smallest the format allows: fewer steps per walk, the same root lifecycle),
# on the TDP MMU as the seed's reporter ran it (a --vm file may say tdp_mmu = 0).
DEFAULT_VM: dict[str, Any] = {
    "name": "sweep-vm",
    "vm": {"vcpus": 2, "root_level": 2, "tdp_mmu": 1},
    "memslot": [
        {"id": 0, "base_gfn": 0x0, "npages": 1, "hva": 0x100},
        {"id": 1, "base_gfn": 0x1, "npages": 1, "hva": 0x200},
    ],
}

_PLACEHOLDER = {"name": "_", "actions": [{"op": "zap_all"}]}


def load_vm(path: str | Path | None) -> tuple[dict[str, Any], Scenario]:
    """The VM (as scenario-format data without threads) and its parsed form.

    A VM file is a scenario file whose ``[[thread]]`` tables, if any, are
    ignored; its ``[[setup]]``, if any, replaces the default prefix.
    """
    if path is None:
        data = dict(DEFAULT_VM)
    else:
        import tomllib
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"{path}: not a valid TOML file: {exc}") from None
        data.pop("thread", None)
        data.setdefault("name", Path(path).stem)
    vm = parse_scenario({**data, "thread": [_PLACEHOLDER]}, str(path or "default VM"))
    return data, vm


def _first_free_gfn(vm: Scenario) -> int:
    return max((m.base_gfn + m.npages for m in vm.memslots), default=0)


def _guest(vm: Scenario) -> list[dict[str, Any]]:
    """One guest instruction: a write or a read of each memslot's first page
    (in address space 0), or entering SMM."""
    gfns = [m.base_gfn for m in vm.memslots if m.as_id == 0]
    return ([{"guest": [f"write {g:#x}"]} for g in gfns]
            + [{"guest": [f"read {g:#x}"]} for g in gfns] + [{"guest": ["smi"]}])


def _new_memslot(vm: Scenario) -> list[dict[str, Any]]:
    hva = max((m.hva + m.npages for m in vm.memslots), default=0)
    return [{"slot": max((m.id for m in vm.memslots), default=-1) + 1,
             "base_gfn": _first_free_gfn(vm), "npages": 1, "hva": (hva + 0xff) & ~0xff}]


# domain name -> the field values it offers for a VM
DOMAINS: dict[str, Callable[[Scenario], list[dict[str, Any]]]] = {
    "vcpu": lambda vm: [{}],  # the thread's own vCPU, filled in by the generator
    "guest": _guest,
    "slot": lambda vm: [{"slot": m.id, "as_id": m.as_id} for m in vm.memslots],
    "free_gfn": lambda vm: [{"base_gfn": _first_free_gfn(vm)}],
    "new_memslot": _new_memslot,
    "hva": lambda vm: [{"hva": m.hva} for m in vm.memslots],
    "hva_range": lambda vm: [{"hva": m.hva, "npages": m.npages} for m in vm.memslots],
    "value": lambda vm: [{"value": True}],  # set_nx_huge_pages: a change from the default
    "gfn_range": lambda vm: [{"base_gfn": m.base_gfn, "npages": m.npages} for m in vm.memslots
                             if m.as_id == 0],
}

Action = tuple[str, tuple[tuple[str, Any], ...]]  # (op, sorted field values), hashable


def op_exists(op: str, kernel: type | None) -> bool:
    """Whether ``kernel`` (a version class or a variant of one) has the op."""
    if kernel is None:
        return True
    from ..kvm.versions import BUILTIN
    since = BUILTIN.get(op_meta(op).since)
    return since is None or issubclass(kernel, since)


def unswept_ops(ops: list[str]) -> dict[str, str]:
    """Ops the sweep cannot draw, with the reason (a field without a domain)."""
    out = {}
    for op in ops:
        meta = op_meta(op)
        names = meta.sweep if meta.sweep is not None else OPS[op][0]
        missing = [n for n in names if n not in DOMAINS]
        if missing:
            out[op] = f"no sweep domain for field(s) {', '.join(missing)}"
    return out


def actions_for(vm: Scenario, ops: list[str], kind: str, vcpu: int | None = None) -> list[Action]:
    """Every action of ``ops`` that a thread of ``kind`` may run."""
    out: list[Action] = []
    for op in ops:
        meta = op_meta(op)
        if meta.thread != kind:
            continue
        required, optional = OPS[op]
        fields = set(required) | set(optional)
        names = meta.sweep if meta.sweep is not None else required
        if any(n not in DOMAINS for n in names):
            continue
        for combo in itertools.product(*(DOMAINS[n](vm) for n in names)):
            args: dict[str, Any] = {}
            for part in combo:
                args.update({k: v for k, v in part.items() if k in fields})
            if kind == "vcpu":
                args["vcpu"] = vcpu
            out.append((op, tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                         for k, v in args.items()))))
    return out
