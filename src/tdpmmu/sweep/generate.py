"""Every scenario of a small scope: threads x actions per thread over a VM.

A thread is a *host* thread or the thread of one vCPU; it runs 1..A actions
that its kind may run (the op table says which).  The scope is every ordered
choice of 2..T such threads.  With the symmetry reduction a scenario is
counted once per orbit under renaming threads (so threads with identical
action lists count once) and under permuting symmetric vCPUs (same setup,
hence same address space; a vCPU whose setup differs is special).  Each
remaining scenario goes through the format's own validation
(:func:`~tdpmmu.scenarios.format.parse_scenario`); what it rejects is
counted as invalid and not run.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from math import comb
from typing import Any

from ..scenarios.format import OPS, Scenario, ScenarioError, parse_scenario
from .vocabulary import Action, actions_for, op_exists

Item = tuple[str, int, tuple[Action, ...]]  # (kind, vcpu or -1, actions)


@dataclass(frozen=True)
class Scope:
    threads: tuple[int, int] = (2, 3)
    actions: tuple[int, int] = (1, 2)
    ops: tuple[str, ...] | None = None  # None: every op of the format
    symmetry: bool = True


@dataclass
class Generated:
    """The generator's counts and the scenarios left to run, smallest first."""

    in_scope: int
    after_symmetry: int
    invalid: int
    scenarios: list[tuple[dict[str, Any], Scenario]] = field(default_factory=list)
    ops: list[str] = field(default_factory=list)
    invalid_examples: list[str] = field(default_factory=list)

    @property
    def to_run(self) -> int:
        return len(self.scenarios)


def default_setup(vm_data: dict[str, Any], vcpus: list[int]) -> list[dict[str, Any]]:
    """The prefix: each vCPU a thread uses has run first, writing the first
    page of every memslot of address space 0, so it holds a root that maps them."""
    pages = [f"write {m['base_gfn']:#x}" for m in vm_data.get("memslot", [])
             if m.get("as_id", 0) == 0]
    return [{"op": "vcpu_run", "vcpu": v, "guest": pages or ["read 0x0"]} for v in vcpus]


def vcpu_classes(vm_data: dict[str, Any], nvcpus: int) -> list[list[int]]:
    """vCPUs that are interchangeable: with the default prefix all are; with a
    VM file's setup, those whose own setup actions are the same."""
    setup = vm_data.get("setup")
    if not setup:
        return [list(range(nvcpus))]
    sig: dict[int, str] = {}
    for v in range(nvcpus):
        own = [{k: x for k, x in a.items() if k != "vcpu"} for a in setup if a.get("vcpu") == v]
        sig[v] = repr(own)
    classes: dict[str, list[int]] = {}
    for v in range(nvcpus):
        classes.setdefault(sig[v], []).append(v)
    return list(classes.values())


def _thread_items(vm: Scenario, ops: list[str], amin: int, amax: int) -> list[Item]:
    items: list[Item] = []
    host = actions_for(vm, ops, "host")
    for n in range(amin, amax + 1):
        items += [("host", -1, seq) for seq in itertools.product(host, repeat=n)]
    for v in range(vm.vcpus):
        own = actions_for(vm, ops, "vcpu", v)
        for n in range(amin, amax + 1):
            items += [("vcpu", v, seq) for seq in itertools.product(own, repeat=n)]
    return items


def _relabel(item: Item, perm: dict[int, int]) -> Item:
    kind, vcpu, seq = item
    if kind != "vcpu":
        return item
    new = tuple((op, tuple((k, perm[x] if k == "vcpu" else x) for k, x in args))
                for op, args in seq)
    return (kind, perm[vcpu], new)


def _perms(classes: list[list[int]]) -> list[dict[int, int]]:
    """Every permutation of the vCPUs that maps each class to itself."""
    out = []
    for choice in itertools.product(*(itertools.permutations(c) for c in classes)):
        perm = {}
        for cls, image in zip(classes, choice, strict=True):
            perm.update(zip(cls, image, strict=True))
        out.append(perm)
    return out


def _candidates(items: list[Item], tmin: int, tmax: int, symmetry: bool,
                perms: list[dict[int, int]]) -> Iterator[tuple[int, ...]]:
    """Index tuples of the threads of each scenario: all ordered tuples, or one
    representative (the least sorted index tuple) per symmetry orbit."""
    if not symmetry:
        for t in range(tmin, tmax + 1):
            yield from itertools.product(range(len(items)), repeat=t)
        return
    index = {it: i for i, it in enumerate(items)}
    maps = [[index[_relabel(it, p)] for it in items] for p in perms
            if any(k != v for k, v in p.items())]
    for t in range(tmin, tmax + 1):
        for combo in itertools.combinations_with_replacement(range(len(items)), t):
            if all(tuple(sorted(m[i] for i in combo)) >= combo for m in maps):
                yield combo


def scenario_data(vm_data: dict[str, Any], threads: list[Item], name: str) -> dict[str, Any]:
    """The scenario as the format's data (what a TOML file holds)."""
    names: dict[str, int] = {}
    out_threads = []
    for kind, vcpu, seq in threads:
        base = "host" if kind == "host" else f"vcpu{vcpu}"
        names[base] = names.get(base, 0) + 1
        tname = base if names[base] == 1 else f"{base}-{names[base]}"
        out_threads.append({"name": tname, "actions": [
            {"op": op, **{k: list(x) if isinstance(x, tuple) else x for k, x in args}}
            for op, args in seq]})
    used = sorted({v for kind, v, _ in threads if kind == "vcpu"})
    data = {k: x for k, x in vm_data.items() if k not in ("name", "description", "thread")}
    data["name"] = name
    data["description"] = "Generated by tdpmmu sweep: " + "; ".join(
        f"{t['name']}: " + ", ".join(a["op"] for a in t["actions"]) for t in out_threads)
    if not vm_data.get("setup"):
        data["setup"] = default_setup(vm_data, used)
    data["thread"] = out_threads
    return data


def all_ops() -> list[str]:
    return list(OPS)


def generate(vm_data: dict[str, Any], vm: Scenario, scope: Scope,
             kernel: type | None = None) -> Generated:
    """The counts of a scope and its valid scenarios, fewest threads then
    fewest actions first."""
    ops = [op for op in (scope.ops or all_ops()) if op_exists(op, kernel)]
    items = _thread_items(vm, ops, *scope.actions)
    perms = _perms(vcpu_classes(vm_data, vm.vcpus))
    tmin, tmax = scope.threads
    in_scope = sum(len(items) ** t for t in range(tmin, tmax + 1))
    kept = invalid = 0
    valid: list[tuple[tuple[int, int, int], dict[str, Any], Scenario]] = []
    examples: list[str] = []
    for n, combo in enumerate(_candidates(items, tmin, tmax, scope.symmetry, perms)):
        kept += 1
        threads = [items[i] for i in combo]
        data = scenario_data(vm_data, threads, f"sweep-{n}")
        try:
            scen = parse_scenario(data, data["name"])
        except ScenarioError as exc:
            invalid += 1
            if len(examples) < 5:
                examples.append(str(exc))
            continue
        size = (len(threads), sum(len(seq) for _, _, seq in threads), n)
        valid.append((size, data, scen))
    valid.sort(key=lambda x: x[0])
    return Generated(in_scope, kept, invalid, [(d, s) for _, d, s in valid], ops, examples)


def multisets(n: int, t: int) -> int:
    """Multisets of size t from n kinds (for counting by hand in tests)."""
    return comb(n + t - 1, t)
