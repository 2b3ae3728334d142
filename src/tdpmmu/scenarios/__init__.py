"""Workloads: a VM configuration plus named threads of actions, as data files.

The built-in scenarios live in ``data/*.toml``; users write their own in the
same format (see :mod:`tdpmmu.scenarios.format`).
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent / "data"

# The seed's scenarios, in the order the main job shows them.
SEED_SCENARIOS = ("seed-bug", "notifier-vs-unload", "next-root-deleted",
                  "root-added-during-walk", "dirty-log-new-root", "teardown")


# The main job also runs these with tdp_mmu=0: the seed's two claims about the
# legacy (shadow) MMU (its roots' lifecycle; dirty logging's flag-first rule).
SEED_LEGACY_SCENARIOS = ("seed-bug", "dirty-log-new-root")


def scenario_names() -> list[str]:
    names = sorted(p.stem for p in DATA.glob("*.toml"))
    order = {n: i for i, n in enumerate(SEED_SCENARIOS)}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


def builtin_scenario_path(name: str) -> Path | None:
    path = DATA / f"{name}.toml"
    return path if path.is_file() else None
