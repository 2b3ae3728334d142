"""Mutation test of the checker: are realistic one-function kernel bugs caught?

Applies systematic operators, with ``ast``, to the root-lifecycle, zap,
MMU-notifier, fault and dirty-log functions of each modelled kernel version
(the function the version actually runs, wherever in its class hierarchy it
is defined), writes each mutant as a variant subclass of that version, and
runs it over every built-in scenario with the default options (DPOR, KASAN,
panic_on_warn) and a bound on executions per run.  A mutant is *killed* when
a scenario on which the unmutated version verifies (within the same bound)
reports a violation.  It prints the score and the survivors.

Operators: ``delete-call`` (a call statement), ``drop-lock`` (every
lock/unlock of one lock in the function), ``negate`` (an ``if``/``while``
condition), ``swap`` (two adjacent statements), ``or-assign`` (``|=`` to
``=``), ``drop-check`` (a ``BUG_ON``/``WARN_ON``/``WARN``/``BUG`` keeps its
condition's control flow but reports nothing).  Tracepoints and trace notes
are not mutated (they are not kernel behaviour), nor is the branch of a
what-if knob that the version's default does not take (the release has no such
code).

Speed: a mutant runs only on the scenarios whose (bounded) exploration of the
unmutated version calls its function (elsewhere its executions are the
original's, step for step), and stops at its first kill; the scenario that
killed it in an earlier run (the cache file, any model code) runs first.  A
mutant that spins without a visible operation is stopped after
``TIMEOUT_CPU`` seconds of CPU and counted as not caught.

A mutant judged equivalent (no behaviour a kernel developer would call a bug
can follow from it, in this model) has its reason in
``bench/mutants-equivalent.toml``, keyed by the mutant's stable id
(``version/function/operator/hash``).  The score counts only the others; a
mutant listed as ``unmodelled`` (a real bug in what the model leaves out)
counts as a survivor, its reason printed.

Usage::

    .venv/bin/python bench/mutants.py [--kernel v5.11]... [--max-executions 300]
        [--jobs 2] [--seed 0] [--sample N] [--only ID_PREFIX] [--list] [--all-scenarios]
        [--cache FILE]

``--sample N`` runs N mutants of each version drawn with ``--seed`` (default 120,
so that a run takes minutes, not hours; ``--sample 0`` runs all).  Versions
default to v5.11 and every later built-in one, so new versions are picked up.
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import inspect
import multiprocessing
import random
import signal
import sys
import textwrap
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EQUIVALENT_FILE = HERE / "mutants-equivalent.toml"
TIMEOUT_CPU = 60.0  # seconds of CPU per mutant before it counts as a hang

# The functions under mutation, by area (names of model methods).
TARGETS: dict[str, tuple[str, ...]] = {
    "root-lifecycle": (
        "kvm_mmu_get_root", "kvm_mmu_put_root", "tdp_mmu_put_root", "kvm_tdp_mmu_free_root",
        "get_tdp_mmu_vcpu_root", "kvm_tdp_mmu_get_vcpu_root_hpa", "tdp_mmu_next_root_valid",
        "tdp_mmu_next_root", "for_each_tdp_mmu_root_yield_safe", "mmu_alloc_direct_roots",
        "kvm_mmu_free_roots", "mmu_free_root_page", "kvm_mmu_unload", "kvm_mmu_load",
        "kvm_mmu_reload", "is_tdp_mmu_root", "kvm_free_vcpus", "kvm_mmu_zap_all_fast",
        # 5.13: refcount_t roots, fast invalidation
        "kvm_tdp_mmu_get_root", "kvm_tdp_mmu_put_root", "kvm_tdp_mmu_invalidate_all_roots",
        "next_invalidated_root",
    ),
    "zap": (
        "zap_gfn_range", "kvm_tdp_mmu_zap_gfn_range", "kvm_tdp_mmu_zap_all",
        "tdp_mmu_iter_flush_cond_resched", "tdp_mmu_iter_cond_resched", "_handle_changed_spte",
        "kvm_mmu_zap_all", "kvm_zap_gfn_range", "set_tdp_spte", "zap_gfn_range_hva_wrapper",
        # 5.12: zaps under the read lock, page tables freed through RCU; 5.13
        "_kvm_tdp_mmu_zap_gfn_range", "handle_removed_tdp_mmu_page", "tdp_mmu_zap_spte_atomic",
        "kvm_tdp_mmu_zap_invalidated_roots",
        # 5.18: the removal under its new name, without its flush (bb95dfb9e2df)
        "handle_removed_pt",
    ),
    "notifier": (
        "kvm_mmu_notifier_invalidate_range_start", "kvm_mmu_notifier_invalidate_range_end",
        "kvm_mmu_notifier_change_pte", "kvm_mmu_notifier_clear_flush_young",
        "kvm_tdp_mmu_handle_hva_range", "handle_hva_range_root", "mmu_notifier_retry",
        "age_gfn_range", "kvm_unmap_hva_range",
        # 5.13: the generic walk over memslots (__kvm_handle_hva_range)
        "_kvm_handle_hva_range",
    ),
    "fault": (
        "direct_page_fault", "kvm_tdp_mmu_map", "tdp_mmu_map_handle_target_level",
        "try_async_pf", "hva_to_pfn", "mmu_notifier_retry_hva",
    ),
    "dirty-log": (
        "wrprot_gfn_range", "slot_root_walk", "clear_dirty_gfn_range", "clear_dirty_pt_masked",
        "kvm_tdp_mmu_clear_dirty_pt_masked", "handle_changed_spte_dirty_log",
        "slot_tdp_walk_and_flush", "take_dirty_bits_and_reprotect",
        "kvm_get_dirty_log_protect", "kvm_mmu_slot_apply_flags", "mark_page_dirty_in_slot",
        "kvm_mmu_slot_leaf_clear_dirty", "kvm_tdp_mmu_clear_dirty_slot",
        "kvm_arch_mmu_enable_log_dirty_pt_masked", "kvm_mmu_clear_dirty_pt_masked",
        "kvm_arch_sync_dirty_log",
        # PML (vmx.c; 5.12's per-vCPU enabling, a85863c2ec55)
        "vmx_slot_enable_log_dirty", "vmx_enable_log_dirty_pt_masked", "vmx_flush_pml_buffer",
        "kvm_flush_pml_buffers", "vmx_handle_exit", "kvm_mmu_update_cpu_dirty_logging",
        "vmx_update_cpu_dirty_logging",
    ),
}

LOCK_CALLS = {"spin_lock": "spin_unlock", "read_lock": "read_unlock",
              "write_lock": "write_unlock", "mutex_lock": "mutex_unlock",
              "KVM_MMU_LOCK": "KVM_MMU_UNLOCK"}
CHECKS = {"BUG_ON", "WARN_ON", "WARN", "BUG", "WARN_ON_ONCE", "WARN_ONCE", "VM_BUG_ON",
          "KVM_BUG_ON"}
# Tracepoints and trace annotations are not kernel behaviour; lockdep assertions
# cannot fire in a version that verifies, so deleting or moving one changes nothing.
# The model's ``*_point`` calls (``shared.bitmap_point`` and friends) declare
# where a visible step of plain kernel code is, for the search: no kernel code.
NOT_MUTATED = ("trace_", "note", "mark", "lockdep_assert")
MODEL_POINT_SUFFIX = "_point"


@dataclass
class Mutant:
    id: str
    version: str
    function: str
    operator: str
    description: str
    source: str


# ---------------------------------------------------------------- operators
def _call_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        f = node.func
        if isinstance(f, ast.Name):
            return f.id
        if isinstance(f, ast.Attribute):
            return f.attr
    return None


def _skipped_call(name: str | None) -> bool:
    return name is None or name.startswith(NOT_MUTATED) or name == "trace_event" \
        or name.endswith(MODEL_POINT_SUFFIX)


def _bodies(tree: ast.AST) -> list[list[ast.stmt]]:
    """Every statement list in the function (bodies of defs, loops, ifs, ...)."""
    out = []
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                out.append(block)
    return out


def _inert(stmt: ast.stmt) -> bool:
    """A statement whose position cannot matter: a note, tracepoint or assertion."""
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) \
        and _skipped_call(_call_name(stmt.value))


def _names(node: ast.AST, ctx: type) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ctx)}


def _pure_local(stmt: ast.stmt) -> bool:
    """An assignment to local names of a value computed from names and constants only."""
    if not isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign):
        return False
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
    if not all(isinstance(t, ast.Name) for t in targets) or stmt.value is None:
        return False
    return not any(isinstance(n, ast.Call | ast.Attribute | ast.Subscript)
                   for n in ast.walk(stmt.value))


def _independent(a: ast.stmt, b: ast.stmt) -> bool:
    """Swapping cannot change anything: one is a pure local computation that the
    other neither reads nor feeds (skipped, as a mutant it is equivalent by construction)."""
    for x, y in ((a, b), (b, a)):
        if _pure_local(x):
            wx, rx = _names(x, ast.Store), _names(x, ast.Load)
            if isinstance(x, ast.AugAssign):
                rx |= wx
            ny = _names(y, ast.Load) | _names(y, ast.Store)
            if not (wx & ny) and not (rx & _names(y, ast.Store)):
                return True
    return False


def _line(node: ast.AST) -> str:
    return ast.unparse(node).splitlines()[0][:70]


_UNKNOWN = object()


def _knob_test(test: ast.expr, knobs: dict[str, Any]) -> Any:
    """The value of an ``if`` test that reads only a what-if knob (``self.<attr>``
    compared with constants), with the version's default knobs; ``_UNKNOWN``
    when the test depends on anything else."""
    if isinstance(test, ast.Attribute) and isinstance(test.value, ast.Name) \
            and test.value.id == "self" and test.attr in knobs:
        return knobs[test.attr]
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        v = _knob_test(test.operand, knobs)
        return v if v is _UNKNOWN else not v
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left = _knob_test(test.left, knobs)
        right = test.comparators[0]
        if left is _UNKNOWN or not isinstance(right, ast.Constant | ast.Tuple):
            return _UNKNOWN
        value = ast.literal_eval(right)
        op = test.ops[0]
        if isinstance(op, ast.Eq | ast.NotEq):
            return (left == value) == isinstance(op, ast.Eq)
        if isinstance(op, ast.In | ast.NotIn):
            return (left in value) == isinstance(op, ast.In)
        return _UNKNOWN
    if isinstance(test, ast.BoolOp):
        values = [_knob_test(v, knobs) for v in test.values]
        # `x and <knob off>` is False whatever x is (and `x or <knob on>` True).
        decisive = isinstance(test.op, ast.Or)
        if any(v is not _UNKNOWN and bool(v) == decisive for v in values):
            return decisive
    return _UNKNOWN


def _what_if_nodes(fn_tree: ast.AST, knobs: dict[str, Any]) -> set[int]:
    """Nodes that are the model's what-ifs, not the release's code: the branch a
    knob's default does not take, and the knob test itself.  Mutating them is
    not a kernel bug (with default options that code never runs, and the
    release has no such branch), so no mutant is made there."""
    out: set[int] = set()
    for node in ast.walk(fn_tree):
        if not isinstance(node, ast.If):
            continue
        taken = _knob_test(node.test, knobs)
        if taken is _UNKNOWN:
            continue
        out.update(id(n) for n in ast.walk(node.test))
        for stmt in (node.orelse if taken else node.body):
            out.update(id(n) for n in ast.walk(stmt))
    return out


def mutations(fn_tree: ast.FunctionDef,
              knobs: dict[str, Any] | None = None) -> list[tuple[str, str, ast.FunctionDef]]:
    """(operator, description, mutated copy) for every mutation point, in source
    order; none in a what-if branch of ``knobs`` (attribute -> default value)."""
    out: list[tuple[str, str, ast.FunctionDef]] = []
    what_if = _what_if_nodes(fn_tree, knobs or {})

    def variant(edit: Any) -> ast.FunctionDef:
        t = copy.deepcopy(fn_tree)
        edit(t)
        ast.fix_missing_locations(t)
        return t

    all_nodes = list(ast.walk(fn_tree))
    index = {id(n): i for i, n in enumerate(all_nodes)}
    nodes = [n for n in all_nodes if id(n) not in what_if]

    def at(t: ast.AST, node: ast.AST) -> ast.AST:
        return list(ast.walk(t))[index[id(node)]]

    # delete-call: an expression statement that is a call
    for node in nodes:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            name = _call_name(node.value)
            if _skipped_call(name) or name in CHECKS or name in LOCK_CALLS \
                    or name in LOCK_CALLS.values():
                continue

            def edit(t: ast.AST, node: ast.AST = node) -> None:
                n = at(t, node)
                n.value = ast.Constant(None)
            out.append(("delete-call", f"delete `{_line(node)}`", variant(edit)))
    # drop-lock: every lock and unlock of one lock
    locks: dict[str, list[ast.AST]] = {}
    for node in nodes:
        if isinstance(node, ast.Expr):
            name = _call_name(node.value)
            if name in LOCK_CALLS or name in LOCK_CALLS.values():
                key = ast.unparse(node.value.args[0]) if node.value.args else "?"
                locks.setdefault(key, []).append(node)
    for key, sites in locks.items():
        def edit(t: ast.AST, sites: list[ast.AST] = sites) -> None:
            for s in sites:
                at(t, s).value = ast.Constant(None)
        out.append(("drop-lock", f"drop the lock/unlock pairs of {key}", variant(edit)))
    # negate: an if/while condition
    for node in nodes:
        if isinstance(node, ast.If | ast.While) and id(node.test) not in what_if:
            def edit(t: ast.AST, node: ast.AST = node) -> None:
                n = at(t, node)
                n.test = ast.UnaryOp(ast.Not(), n.test)
            out.append(("negate", f"negate `{_line(node.test)}`", variant(edit)))
    # or-assign: x |= y -> x = y
    for node in nodes:
        if isinstance(node, ast.AugAssign) and isinstance(node.op, ast.BitOr):
            def edit(t: ast.AST, node: ast.AST = node) -> None:
                n = at(t, node)
                n.__class__ = ast.Assign
                n.targets = [n.target]
                n.type_comment = None
            out.append(("or-assign", f"`{_line(node)}` becomes `=`", variant(edit)))
    # drop-check: BUG_ON/WARN_ON report nothing (WARN_ON(x) still returns x)
    for node in nodes:
        if isinstance(node, ast.Call) and _call_name(node) in CHECKS:
            def edit(t: ast.AST, node: ast.AST = node) -> None:
                n = at(t, node)
                cond = n.args[0] if n.args and _call_name(n) != "BUG" else ast.Constant(True)
                n.func = ast.Name("bool", ast.Load())
                n.args = [cond]
                n.keywords = []
            out.append(("drop-check", f"`{_line(node)}` reports nothing", variant(edit)))
    # swap: two adjacent statements of one block
    for block in _bodies(fn_tree):
        if id(block[0]) in what_if:
            continue
        for i in range(len(block) - 1):
            a, b = block[i], block[i + 1]
            flow = (ast.Return, ast.Continue, ast.Break, ast.Raise)
            if isinstance(a, flow) or isinstance(b, flow):
                continue
            if ast.dump(a) == ast.dump(b) or _inert(a) or _inert(b) or _independent(a, b):
                continue
            if isinstance(a, ast.Expr) and isinstance(a.value, ast.Constant):
                continue  # a docstring

            def edit(t: ast.AST, a: ast.AST = a, b: ast.AST = b) -> None:
                na, nb = at(t, a), at(t, b)
                for n in ast.walk(t):
                    for field in ("body", "orelse", "finalbody"):
                        blk = getattr(n, field, None)
                        if isinstance(blk, list) and na in blk and nb in blk:
                            j = blk.index(na)
                            blk[j], blk[j + 1] = blk[j + 1], blk[j]
                            return
            out.append(("swap", f"swap `{_line(a)}` and `{_line(b)}`", variant(edit)))
    return out


# ----------------------------------------------------------------- mutants
def _versions(names: list[str]) -> dict[str, type]:
    from tdpmmu.kvm.versions import BUILTIN
    return {n: BUILTIN[n] for n in names}


def knob_defaults(cls: type) -> dict[str, Any]:
    """The what-if knobs' attributes and their values on ``cls`` (its defaults)."""
    from tdpmmu.kvm.versions import KNOBS
    return {attr: getattr(cls, attr) for attr, *_ in KNOBS.values() if hasattr(cls, attr)}


def dead_functions(cls: type, fnames: list[str]) -> set[str]:
    """The ``fnames`` nothing in ``cls``'s code calls: older versions' names the
    class still inherits (5.18 renamed ``handle_removed_tdp_mmu_page``).  A
    mutant of one is no mutant of the version, so none is made; the test is
    the one that warns a user's variant about such an override, asked once
    for all of them (a probe variant overriding each with itself)."""
    import tdpmmu.checker  # noqa: F401 - the scenario actions and properties call in too
    from tdpmmu.kvm.variants import VARIANT_MODULE_PREFIX, dead_overrides
    from tdpmmu.kvm.versions import BUILTIN
    probe = type(f"Probe_{cls.__name__}", (cls,),
                 {**{f: getattr(cls, f) for f in fnames},
                  "__module__": VARIANT_MODULE_PREFIX + "probe"})
    return {attr for _c, attr in dead_overrides(probe, list(BUILTIN.values()))}


def generate(version_names: list[str]) -> list[Mutant]:
    out: list[Mutant] = []
    for vname, cls in _versions(version_names).items():
        knobs = knob_defaults(cls)
        dead = dead_functions(cls, target_names(cls))
        for area in TARGETS.values():
            for fname in area:
                fn = getattr(cls, fname, None)
                if fn is None or not inspect.isfunction(fn) or fname in dead:
                    continue
                src = textwrap.dedent(inspect.getsource(fn))
                tree = ast.parse(src).body[0]
                for op, desc, mutated in mutations(tree, knobs):
                    text = ast.unparse(mutated)
                    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
                    out.append(Mutant(f"{vname}/{fname}/{op}/{digest}", vname, fname, op, desc,
                                      text))
    return out


def mutant_class(m: Mutant) -> type:
    """The mutant as a variant: a subclass of its version overriding one function."""
    base = _versions([m.version])[m.version]
    original = getattr(base, m.function)
    namespace = dict(original.__globals__)
    # Compiled inside a factory whose parameter is ``__class__``: the cell a
    # zero-argument ``super()`` reads, bound to the class that defines the
    # original, so the mutant's super() calls reach the same parent method
    # (compiled alone, super() would raise and count as a false kill).
    owner = next(c for c in base.__mro__ if m.function in c.__dict__)
    factory = ("def _mutant_factory(__class__):\n" + textwrap.indent(m.source, "    ")
               + f"\n    return {m.function}\n")
    exec(compile(factory, f"<mutant {m.id}>", "exec"), namespace)  # noqa: S102
    fn = namespace["_mutant_factory"](owner)
    return type(f"Mutant_{m.function}", (base,), {m.function: fn,
                                                  "name": f"{m.version}+mutant"})


# ------------------------------------------------------------------ running
def scenario_order() -> list[str]:
    """Built-in scenarios, cheapest first (a kill usually comes early)."""
    from tdpmmu.scenarios import scenario_names
    first = ("teardown", "next-root-deleted", "zap-range-tlb", "zap-all-huge-tlb",
             "notifier-vs-unload", "root-added-during-walk", "dirty-log-clear")
    names = scenario_names()
    return [n for n in first if n in names] + [n for n in names if n not in first]


def _violated(kernel: Any, scenario: str, bound: int) -> str | None:
    from tdpmmu.checker import check
    try:
        v = check(kernel, scenario, max_executions=bound).violation
    except Exception as exc:  # a mutant that breaks the model's own code
        return f"crash: {type(exc).__name__}: {exc}"
    return None if v is None else f"{v.kind}: {v.message}"


def target_names(cls: type) -> list[str]:
    """The functions under mutation that ``cls`` has."""
    return [f for area in TARGETS.values() for f in area
            if inspect.isfunction(getattr(cls, f, None))]


def baseline(version: str, scenarios: list[str], bound: int) -> dict[str, set[str]]:
    """The scenarios on which the unmutated version verifies (within the bound),
    each with the functions under mutation that its exploration called.

    A mutant of a function that no execution of a scenario's (bounded)
    exploration calls cannot be killed there: the mutant's executions are the
    original's step for step until the function is first called, so its
    exploration is the original's.  Such runs are skipped."""
    from tdpmmu.checker import check
    base = _versions([version])[version]
    called: set[str] = set()

    def counting(name: str, fn: Any) -> Any:
        def wrapper(self: Any, *args: Any, **kw: Any) -> Any:
            called.add(name)
            return fn(self, *args, **kw)
        return wrapper

    cls = type(f"Covered_{base.__name__}", (base,),
               {f: counting(f, getattr(base, f)) for f in target_names(base)})
    out = {}
    for s in scenarios:
        called.clear()
        if check(cls, s, max_executions=bound).violation is None:
            out[s] = set(called)
    return out


class _CpuTimeoutError(Exception):
    pass


_timed_out = [False]


def _on_timer(signum: int, frame: Any) -> None:
    # The checker may turn the exception into a finding of the model code it
    # interrupts: the flag says it was the timer.
    _timed_out[0] = True
    raise _CpuTimeoutError


def run_mutant(args: tuple[Mutant, list[str], int]) -> tuple[str, str | None, str | None, float]:
    """(id, scenario that killed it or None, the finding, CPU seconds).

    A mutant that makes a run spin without a visible operation (an endless loop
    in Python) would hang the checker: after TIMEOUT_CPU seconds of CPU it is
    stopped and counted as *not* caught (scenario "timeout")."""
    m, scenarios, bound = args
    t = time.process_time()
    cls = mutant_class(m)
    old = signal.signal(signal.SIGPROF, _on_timer)
    _timed_out[0] = False
    signal.setitimer(signal.ITIMER_PROF, TIMEOUT_CPU)
    try:
        for s in scenarios:
            found = _violated(cls, s, bound)
            if _timed_out[0]:
                raise _CpuTimeoutError
            if found is not None:
                return m.id, s, found, time.process_time() - t
        return m.id, None, None, time.process_time() - t
    except _CpuTimeoutError:
        return m.id, "timeout", None, time.process_time() - t
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


def code_digest() -> str:
    """A digest of the model, its scenarios and this script (how mutants are
    built and judged): cached results are only reused for it."""
    import tdpmmu
    root = Path(tdpmmu.__file__).parent
    h = hashlib.sha1(Path(__file__).read_bytes())
    for f in sorted(root.rglob("*")):
        if f.suffix in (".py", ".toml") and "__pycache__" not in f.parts:
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:12]


def load_cache(path: Path, key: str) -> dict[str, Any]:
    if not path.exists():
        return {}
    import json
    data = json.loads(path.read_text())
    return data.get(key, {})


def load_hints(path: Path) -> dict[str, str]:
    """Mutant id -> the scenario that killed it in an earlier run on any model code.

    Only an order: a mutant runs its hinted scenario first, on the current
    code, so a kill that still happens costs one scenario (the result is
    the current run's, never the hint's)."""
    if not path.exists():
        return {}
    import json
    out: dict[str, str] = {}
    for results in json.loads(path.read_text()).values():
        for mid, (scenario, found, _cpu) in results.items():
            if found is not None and scenario:
                out[mid] = scenario
    return out


def save_cache(path: Path, key: str, results: dict[str, Any]) -> None:
    import json
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = {k: list(v) for k, v in results.items()}
    path.write_text(json.dumps(data, indent=0, sort_keys=True))


def load_reasons(path: Path = EQUIVALENT_FILE) -> dict[str, tuple[str, str]]:
    """id -> (kind, reason).  Kind ``equivalent``: no behaviour of the model can
    differ (excluded from the score); ``unmodelled``: a real bug in what the
    model leaves out (still counted as a survivor, the reason says what is
    missing)."""
    if not path.exists():
        return {}
    with path.open("rb") as f:
        data = tomllib.load(f)
    return {k: (v.get("kind", "equivalent"), v["reason"]) for k, v in data.items()}


def load_equivalent(path: Path = EQUIVALENT_FILE) -> dict[str, str]:
    return {k: r for k, (kind, r) in load_reasons(path).items() if kind == "equivalent"}


def evaluate(mutants: list[Mutant], versions: list[str], bound: int, jobs: int,
             out: Any = sys.stdout, cache: Path | None = None,
             all_scenarios: bool = False) -> dict[str, Any]:
    scenarios = scenario_order()
    key = f"{code_digest()}/bound={bound}"  # skipping uncalled scenarios changes no result
    cached = load_cache(cache, key) if cache is not None else {}
    covered = {v: baseline(v, scenarios, bound) for v in versions}
    judged = {v: [s for s in scenarios if s in cov] for v, cov in covered.items()}
    for v, ok in judged.items():
        print(f"{v}: judged on {len(ok)} of {len(scenarios)} scenarios (where it verifies "
              f"within {bound} executions)", file=out, flush=True)
    results: dict[str, tuple[str | None, str | None, float]] = {
        m.id: tuple(cached[m.id]) for m in mutants if m.id in cached}
    if results:
        print(f"  {len(results)} results reused from {cache} (same model code, same bound)",
              file=out, flush=True)
    # Each mutant runs on the scenarios whose exploration calls its function,
    # the one that killed it last time (if any) first.
    hints = load_hints(cache) if cache is not None else {}

    def order(m: Mutant) -> list[str]:
        ss = [s for s in judged[m.version]
              if all_scenarios or m.function in covered[m.version][s]]
        first = hints.get(m.id)
        return ([first] if first in ss else []) + [s for s in ss if s != first]

    work = [(m, order(m), bound) for m in mutants if m.id not in results]

    def note(mid: str, s: str | None, found: str | None, cpu: float) -> None:
        results[mid] = (s, found, cpu)
        what = f"killed on {s}: {found[:90]}" if found else s or "survived"
        print(f"  [{len(results)}/{len(mutants)}] {mid} {what}", file=out, flush=True)
        if cache is not None:
            save_cache(cache, key, results)

    if jobs > 1:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for r in pool.imap_unordered(run_mutant, work):
                note(*r)
    else:
        for w in work:
            note(*run_mutant(w))
    return {"results": results, "judged": judged}


def report(mutants: list[Mutant], results: dict[str, Any], equivalent: dict[str, str],
           out: Any = sys.stdout) -> float:
    by_version: dict[str, list[Mutant]] = {}
    for m in mutants:
        by_version.setdefault(m.version, []).append(m)
    worst = 100.0
    for version, ms in by_version.items():
        killed = [m for m in ms if results[m.id][1] is not None]
        equiv = [m for m in ms if results[m.id][1] is None and m.id in equivalent]
        survivors = [m for m in ms if results[m.id][1] is None and m.id not in equivalent]
        hangs = [m for m in survivors if results[m.id][0] == "timeout"]
        judged = len(ms) - len(equiv)
        score = 100.0 * len(killed) / judged if judged else 100.0
        worst = min(worst, score)
        ops: dict[str, list[int]] = {}
        for m in ms:
            k = ops.setdefault(m.operator, [0, 0])
            k[1] += 1
            k[0] += results[m.id][1] is not None
        print(f"\n{version}: {len(ms)} mutants, {len(killed)} killed, {len(equiv)} "
              f"equivalent (with reasons), {len(survivors)} survived", file=out)
        print("  by operator: " + ", ".join(f"{op} {k}/{n}" for op, (k, n) in
                                              sorted(ops.items())), file=out)
        print(f"  mutation score: {score:.1f}% of non-equivalent mutants killed", file=out)
        reasons = load_reasons()
        for m in survivors:
            how = "HUNG (counted as not caught)" if m in hangs else "SURVIVED"
            print(f"  {how} {m.id}: {m.description}", file=out)
            if m.id in reasons:
                print(f"      ({reasons[m.id][0]}: {reasons[m.id][1]})", file=out)
        stale = [mid for mid in equivalent if mid.startswith(version + "/")
                 and mid in results and results[mid][1] is not None]
        for mid in stale:
            print(f"  note: {mid} is listed as equivalent but was killed", file=out)
    return worst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kernel", action="append", help="version(s) to mutate (default: v5.11 "
                   "and every later built-in version)")
    p.add_argument("--max-executions", type=int, default=300)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample", type=int, default=120,
                   help="run N mutants of each version drawn with --seed (0: all; default "
                   "120)")
    p.add_argument("--only", default="", help="run the mutants whose id starts with this")
    p.add_argument("--list", action="store_true", help="list the mutants and stop")
    p.add_argument("--all-scenarios", action="store_true",
                   help="run each mutant on every scenario, also those whose exploration "
                   "never calls its function (slower, same result)")
    p.add_argument("--cache", default="/tmp/tdpmmu-mutants-cache.json",
                   help="results of earlier runs on the same model code and bound are "
                   "reused from this file ('' to disable)")
    args = p.parse_args(argv)
    from tdpmmu.kvm.versions import BUILTIN
    names = list(BUILTIN)
    versions = args.kernel or names[names.index("v5.11"):]
    mutants = [m for m in generate(versions) if m.id.startswith(args.only)]
    if args.sample:
        # N per version, so that each version's score has the same weight.
        drawn = []
        for v in versions:
            ms = [m for m in mutants if m.version == v]
            drawn += random.Random(f"{args.seed}/{v}").sample(ms, min(args.sample, len(ms)))
        mutants = sorted(drawn, key=lambda m: m.id)
    if args.list:
        for m in mutants:
            print(f"{m.id}: {m.description}")
        return 0
    print(f"{len(mutants)} mutants of {', '.join(versions)}; bound {args.max_executions} "
          f"executions per run; {args.jobs} jobs", flush=True)
    t = time.perf_counter()
    cpu0 = time.process_time()
    ev = evaluate(mutants, versions, args.max_executions, args.jobs,
                  cache=Path(args.cache) if args.cache else None,
                  all_scenarios=args.all_scenarios)
    equivalent = load_equivalent()
    worst = report(mutants, ev["results"], equivalent)
    cpu = time.process_time() - cpu0 + sum(r[2] for r in ev["results"].values())
    print(f"\n{time.perf_counter() - t:.0f} s wall, {cpu:.0f} s CPU", flush=True)
    return 0 if worst >= 95.0 else 1


if __name__ == "__main__":
    sys.exit(main())
