"""A scenario's data written back as a TOML file the format reads."""

from __future__ import annotations

from typing import Any


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return hex(v) if v > 9 else str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def _table(lines: list[str], header: str, body: dict[str, Any]) -> None:
    lines += ["", header]
    for k, v in body.items():
        if k == "actions":
            lines.append("actions = [")
            lines += [f"  {_value(a)}," for a in v]
            lines.append("]")
        else:
            lines.append(f"{k} = {_value(v)}")


def scenario_toml(data: dict[str, Any], comment: list[str] | None = None) -> str:
    """TOML text for scenario-format ``data`` (name, description, vm, memslot,
    setup, thread), with ``comment`` lines on top."""
    lines = [f"# {c}" for c in comment or []]
    lines.append(f"name = {_value(data['name'])}")
    if data.get("description"):
        lines.append(f"description = {_value(data['description'])}")
    if data.get("vm"):
        _table(lines, "[vm]", data["vm"])
    for m in data.get("memslot", []):
        _table(lines, "[[memslot]]", m)
    for a in data.get("setup", []):
        _table(lines, "[[setup]]", a)
    for t in data.get("thread", []):
        _table(lines, "[[thread]]", t)
    return "\n".join(lines) + "\n"
