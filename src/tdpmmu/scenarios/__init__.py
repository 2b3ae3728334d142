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


def scenario_names() -> list[str]:
    names = sorted(p.stem for p in DATA.glob("*.toml"))
    order = {n: i for i, n in enumerate(SEED_SCENARIOS)}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


def builtin_scenario_path(name: str) -> Path | None:
    path = DATA / f"{name}.toml"
    return path if path.is_file() else None
