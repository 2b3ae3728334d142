"""Running a sweep's scenarios and grouping what they find.

A finding's signature is its kind, the function where it fired and that
function's three innermost kernel callers; each group keeps its smallest
scenario (fewest threads, then actions, then steps).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..checker import check
from ..engine import Violation
from ..report.text import _HELPERS, _finding_step

Signature = tuple[str, str, tuple[str, ...]]


def call_chain(v: Violation) -> list[str]:
    """The finding's kernel call chain, innermost first: the oops' Call Trace
    when it printed one, else the stack of the step where it fired."""
    lines = list(v.details)
    if "Call Trace:" in lines:
        chain = []
        for line in lines[lines.index("Call Trace:") + 1:]:
            if not line.startswith(" ") or not line.strip():
                break
            chain.append(line.strip().split()[0])
        if chain:
            return chain
    if v.trace:
        stack = v.trace[_finding_step(v)].stack
        return [n for n in reversed(stack) if n not in _HELPERS and not n.startswith("<")
                and not n.startswith("do_")]
    return []


def signature(v: Violation) -> Signature:
    chain = call_chain(v)
    fn = v.function or (chain[0] if chain else "?")
    if fn in chain:
        chain = chain[chain.index(fn) + 1:]
    return (v.kind, fn, tuple(chain[:3]))


@dataclass
class Finding:
    signature: Signature
    message: str
    kernel: str
    scenario: dict[str, Any]  # the smallest scenario's data
    schedule: str
    threads: int
    actions: int
    steps: int
    scenarios: int = 1  # how many scenarios found it
    file: str | None = None

    @property
    def size(self) -> tuple[int, int, int]:
        return (self.threads, self.actions, self.steps)


@dataclass
class SweepResult:
    kernel: str
    generated: int
    run: int = 0
    verified: int = 0
    cut: list[str] = field(default_factory=list)  # names of incomplete scenarios
    violating: int = 0
    not_run: int = 0
    findings: dict[Signature, Finding] = field(default_factory=dict)
    elapsed: float = 0.0
    stopped_by: str | None = None


def run_sweep(kernel: type, scenarios: list[tuple[dict[str, Any], Any]], *,
              max_executions: int | None, time_limit: float | None,
              max_steps: int = 5_000, kasan: bool = True, panic_on_warn: bool = True,
              tick: Callable[[int, SweepResult], None] | None = None,
              backend: Any = None, kernel_spec: str | None = None) -> SweepResult:
    """Run each scenario with the default strategy, one work unit each: serially
    here, or on ``backend`` (local processes or Ray, from :mod:`tdpmmu.parallel`),
    until done or ``time_limit`` seconds have passed."""
    out = SweepResult(kernel.name, len(scenarios))
    start = time.perf_counter()
    if backend is not None:
        _run_units(out, kernel_spec or kernel.name, scenarios, backend, max_executions,
                   time_limit, max_steps, kasan, panic_on_warn, tick)
    else:
        for i, (data, scen) in enumerate(scenarios):
            if time_limit is not None and time.perf_counter() - start >= time_limit:
                out.stopped_by = "time_limit"
                out.not_run = len(scenarios) - i
                break
            res = check(kernel, scen, max_executions=max_executions, max_steps=max_steps,
                        kasan=kasan, panic_on_warn=panic_on_warn)
            record(out, data, res.kernel, res.result)
            if tick is not None:
                tick(i + 1, out)
    out.elapsed = time.perf_counter() - start
    return out


def _run_units(out: SweepResult, kernel_spec: str, scenarios: list[tuple[dict[str, Any], Any]],
               backend: Any, max_executions: int | None, time_limit: float | None,
               max_steps: int, kasan: bool, panic_on_warn: bool,
               tick: Callable[[int, SweepResult], None] | None) -> None:
    """Each scenario as a file-backed work unit of :func:`tdpmmu.parallel.run_matrix`;
    a unit the deadline stopped before its first execution counts as not run."""
    import tempfile

    from ..parallel.matrix import run_matrix
    from ..parallel.units import CheckUnit
    from .toml import scenario_toml
    deadline = time.time() + time_limit if time_limit is not None else None
    with tempfile.TemporaryDirectory(prefix="tdpmmu-sweep-") as tmp:
        units = []
        for i, (data, _) in enumerate(scenarios):
            path = f"{tmp}/{i}.toml"
            with open(path, "w", encoding="utf-8") as f:
                f.write(scenario_toml(data))
            units.append(CheckUnit(kernel_spec, path, max_executions=max_executions,
                                   max_steps=max_steps, kasan=kasan,
                                   panic_on_warn=panic_on_warn, deadline=deadline))

        def on_result(i: int, r: Any) -> None:
            if r.cut_by == "time_limit" and r.executions == 0:
                out.not_run += 1
                out.stopped_by = "time_limit"
            else:
                record(out, scenarios[i][0], out.kernel, r)
            if tick is not None:
                tick(i + 1, out)
        run_matrix(units, backend, on_result)


def record(out: SweepResult, data: dict[str, Any], kernel: str, result: Any) -> None:
    """Count one scenario's engine result and file its finding by signature."""
    out.run += 1
    v = result.violation
    if v is None:
        if result.complete:
            out.verified += 1
        else:
            out.cut.append(data["name"])
        return
    out.violating += 1
    sig = signature(v)
    threads = len(data["thread"])
    actions = sum(len(t["actions"]) for t in data["thread"])
    new = Finding(sig, v.message, kernel, data, v.schedule, threads, actions, v.steps)
    old = out.findings.get(sig)
    if old is None:
        out.findings[sig] = new
    else:
        if new.size < old.size:
            new.scenarios = old.scenarios + 1
            out.findings[sig] = new
        else:
            old.scenarios += 1
