"""Helpers for the KVM-layer tests: small scenarios, setup-style worlds, paging walks.

"Setup-style" means outside any model thread: the engine's visible operations
are no-ops and locks are taken directly, so model functions can be called one
after another like plain Python.
"""

from __future__ import annotations

from typing import Any

from tdpmmu.checker import build_model
from tdpmmu.kernel import list_for_each_entry
from tdpmmu.kvm.spte import (
    KVM_PAGES_PER_HPAGE,
    PAGE_SHIFT,
    is_last_spte,
    is_shadow_present_pte,
    spte_to_pfn,
)
from tdpmmu.kvm.structs import INVALID_PAGE
from tdpmmu.scenarios.actions import ACTIONS, World
from tdpmmu.scenarios.format import Action, Scenario, parse_scenario

SLOT0 = {"id": 0, "base_gfn": 0, "npages": 16, "hva": 0x100}
SMRAM = {"id": 1, "as_id": 1, "base_gfn": 0, "npages": 16, "hva": 0x300}


def scenario(setup: list[dict[str, Any]] = (), *, vcpus: int = 1,
             memslots: list[dict[str, Any]] | None = None,
             threads: list[dict[str, Any]] | None = None, root_level: int = 3,
             tdp_mmu: int = 1, pml: int = 0) -> Scenario:
    """A validated scenario; by default one memslot of 16 gfns at gfn 0 and a
    host thread that zaps everything (the tests here only use its setup), on the
    TDP MMU (these tests are the TDP MMU's)."""
    data = {
        "name": "unit",
        "vm": {"vcpus": vcpus, "root_level": root_level, "tdp_mmu": tdp_mmu, "pml": pml},
        "memslot": [SLOT0] if memslots is None else memslots,
        "setup": list(setup),
        "thread": threads or [{"name": "host", "actions": [{"op": "zap_all"}]}],
    }
    return parse_scenario(data, "<unit>")


def run_vcpu(vcpu: int, *guest: str) -> dict[str, Any]:
    return {"op": "vcpu_run", "vcpu": vcpu, "guest": list(guest)}


def what_if(base: type, suffix: str, **overrides: Any) -> type:
    """A variant of kernel class ``base`` named ``<base.name>+<suffix>`` whose
    methods in ``overrides`` replace the version's (one what-if on several
    versions)."""
    return type(f"{base.__name__}_{suffix.replace('-', '_')}", (base,),
                {"name": f"{base.name}+{suffix}", **overrides})


def world(kernel_cls: type, scen: Scenario) -> World:
    """A fresh VM after the scenario's setup actions."""
    return build_model(kernel_cls, scen).setup()


def action(op: str, **args: Any) -> Action:
    """A validated action with its defaults filled in."""
    scen = parse_scenario({"name": "a", "vm": {"vcpus": 4},
                           "thread": [{"name": "t", "actions": [{"op": op, **args}]}]},
                          "<action>")
    return scen.threads[0][1][0]


def do(w: World, op: str, **args: Any) -> None:
    """Run one scenario action on ``w`` outside model threads."""
    ACTIONS[op](w, action(op, **args))


def roots(kvm: Any) -> list[Any]:
    return list(list_for_each_entry(kvm.arch.tdp_mmu_roots))


def vcpu_root(vcpu: Any) -> Any:
    assert vcpu.mmu.root_hpa != INVALID_PAGE, f"vcpu{vcpu.vcpu_id} has no root"
    return vcpu.kvm.phys[vcpu.mmu.root_hpa >> PAGE_SHIFT]


def leaf_sptes(kvm: Any, root: Any) -> dict[int, tuple[int, int]]:
    """gfn -> (level, spte) of every present leaf under ``root``, found by a
    recursive walk of ``spt`` arrays (independent of ``tdp_iter``)."""
    out: dict[int, tuple[int, int]] = {}

    def walk(sp: Any, level: int, base: int) -> None:
        for i, spte in enumerate(sp.spt):
            gfn = base + i * KVM_PAGES_PER_HPAGE(level)
            if not is_shadow_present_pte(spte):
                continue
            if is_last_spte(spte, level):
                out[gfn] = (level, spte)
            else:
                walk(kvm.phys[spte_to_pfn(spte)], level - 1, gfn)

    walk(root, root.role.level, 0)
    return out


def page_tables_under(kvm: Any, root: Any) -> list[Any]:
    """Every non-root page-table page reachable from ``root``."""
    out: list[Any] = []

    def walk(sp: Any, level: int) -> None:
        for spte in sp.spt:
            if is_shadow_present_pte(spte) and not is_last_spte(spte, level):
                child = kvm.phys[spte_to_pfn(spte)]
                out.append(child)
                walk(child, level - 1)

    walk(root, root.role.level)
    return out


def host_pfn(kvm: Any, hva: int) -> int:
    return kvm.mm.ptes[hva].value[0]
