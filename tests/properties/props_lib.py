"""Helpers for the property tests: small scenarios built from dicts."""

from __future__ import annotations

from typing import Any

from tdpmmu.scenarios.format import Scenario, parse_scenario

SLOT0 = {"id": 0, "base_gfn": 0, "npages": 4, "hva": 0x100}
SMRAM = {"id": 1, "as_id": 1, "base_gfn": 0, "npages": 4, "hva": 0x300}


def scen(threads: dict[str, list[dict[str, Any]]], setup: list[dict[str, Any]] = (), *,
         vcpus: int = 1, memslots: list[dict[str, Any]] | None = None,
         root_level: int = 3, tdp_mmu: int = 1) -> Scenario:
    data = {"name": "props-unit", "vm": {"vcpus": vcpus, "root_level": root_level,
                                         "tdp_mmu": tdp_mmu},
            "memslot": [SLOT0] if memslots is None else memslots, "setup": list(setup),
            "thread": [{"name": n, "actions": a} for n, a in threads.items()]}
    return parse_scenario(data, "<props-unit>")


def run(vcpu: int, *guest: str) -> dict[str, Any]:
    return {"op": "vcpu_run", "vcpu": vcpu, "guest": list(guest)}


def messages(v: Any) -> list[str]:
    """The finding's message and its root cause's (a property reported first)."""
    out = [v.message]
    if v.root_cause is not None:
        out.append(v.root_cause.message)
    return out
