"""Checking a kernel version against a scenario: builds the model and runs the engine.

:func:`build_model` turns (kernel class, scenario, knobs) into what the engine
runs: a ``setup`` making a fresh VM for each execution, one model thread per
scenario thread, a per-step invariant and a final check (teardown, then the
properties).  :func:`check` explores it; :func:`replay` re-runs a token.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import engine
from .engine import schedule as engine_tokens
from .engine.strategies import Strategy
from .kernel import (
    kmem_cache_create,
    kworker,
    lockdep_sys_exit,
    mutex,
    object_is_freed,
    set_kasan,
    set_panic_on_warn,
    srcu_struct,
)
from .kvm.structs import (
    KVM_MEM_LOG_DIRTY_PAGES,
    kvm,
    kvm_memory_slot,
    kvm_memslots,
    kvm_mmu_page,
    kvm_mmu_page_role,
)
from .kvm.variants import dead_override_warnings, knob_warnings, variant_raised
from .kvm.versions import BUILTIN, KNOBS, V5_10, KernelError, load_kernel, load_kernel_notes
from .properties import Properties
from .properties.peek import mmu_roots, peek
from .scenarios import builtin_scenario_path, scenario_names
from .scenarios.actions import ACTIONS, World
from .scenarios.format import (
    VM_TYPES,
    Action,
    Scenario,
    ScenarioError,
    check_for_kernel,
    holds_vm_fd,
    load_scenario,
)


class UserError(ValueError):
    """Bad input from the user: reported in one line, exit code 2."""


@dataclass
class Model:
    """What the engine runs for one (kernel, scenario, knobs)."""

    kernel: type[V5_10]
    scenario: Scenario
    knobs: dict[str, str]
    setup: Callable[[], World]
    threads: list[tuple[str, Callable[[World], None]]]
    check: Callable[[World], None]
    invariant: Callable[[World], None]
    observe: Callable[[World], Any]


@dataclass
class CheckResult:
    kernel: str
    scenario: str
    strategy: str
    knobs: dict[str, str]
    result: engine.Result
    model: Model = field(repr=False)
    kernel_spec: str = ""  # as the user named it (a version or a variant file)
    scenario_spec: str = ""
    kasan: bool = True
    panic_on_warn: bool = True

    @property
    def violation(self) -> engine.Violation | None:
        return self.result.violation

    @property
    def thread_names(self) -> list[str]:
        return [name for name, _ in self.model.threads]


def resolve_kernel(spec: str) -> type[V5_10]:
    try:
        return load_kernel(spec)
    except KernelError as exc:
        raise UserError(str(exc)) from None


def resolve_kernel_notes(spec: str, knobs: dict[str, str]) -> tuple[type[V5_10], list[str]]:
    """The kernel class of ``spec`` and what to tell the user about it: which
    class of a variant file is used, and the knobs its code no longer reads."""
    try:
        cls, notes = load_kernel_notes(spec)
    except KernelError as exc:
        raise UserError(str(exc)) from None
    warnings = dead_override_warnings(cls, list(BUILTIN.values())) + \
        knob_warnings(cls, knobs, KNOBS)
    return cls, [f"note: {n}" for n in notes] + [f"warning: {w}" for w in warnings]


class SetupFinding(Exception):  # noqa: N818 - carries a finding out of the engine
    """A finding raised while the VM was set up: it holds in every execution."""

    def __init__(self, violation: engine.Violation) -> None:
        super().__init__(violation.message)
        self.violation = violation

    def __reduce__(self) -> tuple[type, tuple[engine.Violation]]:
        # A -j N worker sends it back pickled: rebuilt from the violation.
        return type(self), (self.violation,)

    def result(self, strategy: str) -> engine.Result:
        """The search's result: one execution, this violation."""
        return engine.Result(strategy=strategy, executions=1, complete=False,
                             violation=self.violation, elapsed=0.0)


def _guarded_setup(kernel_cls: type[V5_10], setup: Callable[[], World]) -> Callable[[], World]:
    """``setup`` with what it raises sorted: the variant's own Python error is
    the user's (exit 2); a kernel finding or a model error is a finding."""
    def guarded() -> World:
        try:
            return setup()
        except engine.Finding as f:
            raise SetupFinding(_setup_violation(f.kind, f.message, f.function,
                                                 list(f.details))) from None
        except Exception as exc:
            tb = [line.rstrip() for line in traceback.format_exception(exc)]
            what = f"{type(exc).__name__}: {exc}"
            mine = variant_raised(kernel_cls, what, tb)
            if mine is not None:
                raise UserError(f"{mine}, while setting up the VM") from None
            frames = traceback.extract_tb(exc.__traceback__)
            raise SetupFinding(_setup_violation("exception", what,
                                                 frames[-1].name if frames else None,
                                                 tb)) from None
    return guarded


def _setup_violation(kind: str, message: str, function: str | None,
                     details: list[str]) -> engine.Violation:
    return engine.Violation(kind=kind, message=message, thread="setup",
                            schedule=engine_tokens.encode([]), trace=[], function=function,
                            details=details, step=0)


def _raise_if_variant_raised(kernel_cls: type[V5_10], result: engine.Result) -> None:
    """A Python exception in the variant's own code is the user's, not a kernel finding."""
    v = result.violation
    if v is not None and v.kind == "exception":
        mine = variant_raised(kernel_cls, v.message, v.details)
        if mine is not None:
            raise UserError(mine)


def resolve_scenario(spec: str) -> Scenario:
    path = builtin_scenario_path(spec)
    if path is None:
        if not Path(spec).exists():
            raise UserError(f"unknown scenario {spec!r} (built in: "
                            f"{', '.join(scenario_names())}; or a .toml file)")
        path = Path(spec)
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        raise UserError(str(exc)) from None


def parse_knobs(items: list[str]) -> dict[str, str]:
    """``name=choice`` pairs, validated against :data:`KNOBS`."""
    knobs: dict[str, str] = {}
    for item in items:
        name, sep, choice = item.partition("=")
        if not sep or name not in KNOBS:
            raise UserError(f"--knob {item!r}: expected NAME=CHOICE with NAME one of "
                            f"{', '.join(KNOBS)}")
        choices = KNOBS[name][1]
        if choice not in choices:
            raise UserError(f"--knob {name}: unknown choice {choice!r} (choose from "
                            f"{', '.join(choices)})")
        knobs[name] = choice
    return knobs


def make_kernel(kernel_cls: type[V5_10], knobs: dict[str, str]) -> V5_10:
    k = kernel_cls()
    for name, choice in knobs.items():
        attr, choices, _good, _help = KNOBS[name]
        if not hasattr(k, attr):
            if attr == "CONFIG_KVM_PROVE_MMU":
                raise UserError(f"--prove-mmu: kernel {kernel_cls.name} has no "
                                "CONFIG_KVM_PROVE_MMU (the Kconfig option exists from 6.6)")
            raise UserError(f"--knob {name}: kernel {kernel_cls.name} has no such code "
                            f"(the knob applies to {attr})")
        setattr(k, attr, choices[choice])
    return k


def build_model(kernel_cls: type[V5_10], scenario: Scenario,
                knobs: dict[str, str] | None = None) -> Model:
    knobs = dict(knobs or {})
    try:
        k = make_kernel(kernel_cls, knobs)
    except UserError:
        raise
    except Exception as exc:
        tb = [line.rstrip() for line in traceback.format_exception(exc)]
        mine = variant_raised(kernel_cls, f"{type(exc).__name__}: {exc}", tb)
        if mine is None:
            raise
        raise UserError(mine) from None
    try:
        check_for_kernel(scenario, getattr(kernel_cls, "set_cpuid_after_run", "any"),
                         kernel_cls.name)
    except ScenarioError as exc:
        raise UserError(str(exc)) from None
    if scenario.vm_type != "default":
        # A VM type the version lacks, or has but the model leaves out, is refused.
        why = getattr(kernel_cls, "vm_types_left_out", {}).get(
            scenario.vm_type, f"has no {VM_TYPES[scenario.vm_type]} (not in its uapi)")
        raise UserError(f"{scenario.path or scenario.name}: [vm] type = "
                        f"{scenario.vm_type!r}: kernel {kernel_cls.name} {why}")
    if "tdp_mmu" not in knobs and scenario.tdp_mmu is not None:
        k.tdp_mmu = bool(scenario.tdp_mmu)  # the scenario's module parameter
    if scenario.pml:
        if getattr(kernel_cls, "pml_dirty_logging", None) is None:
            modelled = ", ".join(c.name for c in BUILTIN.values()
                                 if getattr(c, "pml_dirty_logging", None) is not None)
            raise UserError(f"{scenario.path or scenario.name}: [vm] pml = 1: the model has "
                            f"no PML dirty logging for kernel {kernel_cls.name} (modelled: "
                            f"{modelled})")
        if not k.tdp_mmu:
            raise UserError(f"{scenario.path or scenario.name}: [vm] pml = 1 needs the TDP "
                            "MMU (tdp_mmu=1): the legacy MMU's PML walks (__rmap_clear_dirty, "
                            "__rmap_set_dirty) are not modelled")
    # The threads destroy_vm waits for: they hold the VM's fd (vCPU threads among them).
    vcpu_threads = {name for name, actions in scenario.threads if holds_vm_fd(actions)}

    def setup() -> World:
        vm = kvm(scenario.vcpus, scenario.root_level)
        vm.manual_dirty_log_protect = scenario.manual_dirty_log_protect
        vm.enable_pml = scenario.pml
        vm.mmu_page_header_cache = kmem_cache_create("kvm_mmu_page_header", kvm_mmu_page)
        vm.srcu = srcu_struct("kvm->srcu")
        vm.slots_lock = mutex("kvm->slots_lock")
        # Module globals, one VM per run: kvm_lock (guards vm_list) and the
        # nx_huge_pages parameter (false: "off", the model's default).
        vm.kvm_lock = mutex("kvm_lock")
        vm.nx_huge_pages = False
        k.kvm_mmu_init_vm(vm)
        for vcpu in vm.vcpus:
            vcpu.mutex = mutex(f"vcpu{vcpu.vcpu_id}->mutex")
            vcpu.mmu_role = kvm_mmu_page_role(level=vm.root_level)
            k.kvm_init_mmu(vcpu)
        for as_id in range(2):
            slots = [kvm_memory_slot(id=m.id, as_id=m.as_id, base_gfn=m.base_gfn,
                                     npages=m.npages, userspace_addr=m.hva,
                                     flags=KVM_MEM_LOG_DIRTY_PAGES if m.log_dirty else 0,
                                     dirty_bitmap=[0] * m.npages if m.log_dirty else None,
                                     huge=m.huge)
                     for m in scenario.memslots if m.as_id == as_id]
            vm.memslots[as_id].value = kvm_memslots(generation=0, slots=slots)
            for s in slots:
                if s.huge:
                    vm.mm.map_huge(s.userspace_addr, s.npages)
                for hva in range(s.userspace_addr, s.userspace_addr + s.npages):
                    vm.mm.pte(hva)
        vm.arch.cpu_dirty_logging_count = sum(bool(m.log_dirty) for m in scenario.memslots)
        for vcpu in vm.vcpus:
            vcpu.pml_enabled = k.vmx_secondary_exec_control_pml(vcpu)
        vm.vcpu_threads_running.value = len(vcpu_threads)
        world = World(k, vm, None)
        world.props = Properties(vm, k)
        for m in scenario.memslots:
            if m.log_dirty:
                k.trace_event(vm, "dirty_log_enabled", key=(m.as_id, m.id))
        for action in scenario.setup:
            _run_action(world, action)
        return world

    def make_thread(name: str, actions: list[Action]) -> Callable[[World], None]:
        is_vcpu = name in vcpu_threads

        def thread(world: World) -> None:
            for action in actions:
                _run_action(world, action)
                # Each action is a syscall or ioctl: lockdep's check on its return.
                lockdep_sys_exit(action.op)
            if is_vcpu:
                running = world.kvm.vcpu_threads_running
                # A decrement nobody reads but the VM's destruction (which
                # waits for 0): it commutes with the other vCPU threads' ones.
                engine.visible(f"{name} exits", ((running, engine.update_mode()),))
                running.value -= 1
        thread.__name__ = name
        return thread

    def check(world: World) -> None:
        if not world.kvm.destroyed:
            world.props.before_teardown(world.kvm)
            world.k.kvm_destroy_vm(world.kvm)
        world.props.final(world.kvm)

    def invariant(world: World) -> Any:
        return world.props.invariant(world.kvm)

    def observe(world: World) -> Any:
        return snapshot_roots(world.kvm)

    threads = [(name, _exit_is_an_error(make_thread(name, actions)))
                for name, actions in scenario.threads]
    # A version whose code queues work (5.18's tdp_mmu_zap_wq) says how many
    # kernel worker threads run it: ``kworker_threads`` on the version class.
    threads += [(f"kworker/u:{i}", _exit_is_an_error(kworker))
                for i in range(getattr(k, "kworker_threads", 0))]
    return Model(kernel_cls, scenario, knobs,
                 _guarded_setup(kernel_cls, _exit_is_an_error(setup)), threads,
                 _exit_is_an_error(check), invariant, observe)


def _exit_is_an_error(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with a ``sys.exit()`` in model code (a variant's) turned into an
    exception with the same traceback: it must not end the tool with its code."""
    def run(*args: Any) -> Any:
        try:
            return fn(*args)
        except SystemExit as exc:
            err = RuntimeError(f"SystemExit({exc.code!r}): sys.exit() in kernel code")
            raise err.with_traceback(exc.__traceback__) from None
    run.__name__ = fn.__name__
    return run


def _run_action(world: World, action: Action) -> None:
    ACTIONS[action.op](world, action)


def snapshot_roots(vm: Any) -> tuple[tuple[str, str, int, bool], ...]:
    """(name, role, root_count, freed) of each root: the TDP MMU's in list order,
    then the legacy MMU's."""
    out = []
    for root in mmu_roots(vm):
        count = peek(root, "root_count", 0)
        refs = peek(root, "tdp_mmu_root_count")  # 5.13+: a refcount_t
        if refs is not None:
            count = peek(refs, "refs", 0)
        out.append((str(peek(root, "name")), str(peek(root, "role")), int(count),
                    object_is_freed(root)))
    return tuple(out)


def check(kernel: str | type[V5_10], scenario: str | Scenario, *,
          strategy: str | Strategy = "dpor",
          knobs: dict[str, str] | None = None, max_executions: int | None = None,
          seed: int = 0, preemption_bound: int | None = None, max_steps: int = 5_000,
          kasan: bool = True, panic_on_warn: bool = True,
          progress: Callable[[int], None] | None = None,
          stop: Callable[[], str | None] | None = None,
          snapshots: bool | str = False) -> CheckResult:
    """Explore a kernel version on a scenario; see :class:`CheckResult`.

    ``snapshots`` (True, or ``"auto"``: where they pay) reaches backtrack
    points from forked snapshots instead of re-running prefixes (see
    :mod:`tdpmmu.engine.snapshots`); the results are the same.

    ``strategy`` is a name or a strategy object (to watch or save its tree);
    ``stop`` may end the search between executions (see :func:`engine.explore`).
    """
    kernel_cls = resolve_kernel(kernel) if isinstance(kernel, str) else kernel
    scen = resolve_scenario(scenario) if isinstance(scenario, str) else scenario
    model = build_model(kernel_cls, scen, knobs)
    if isinstance(strategy, str) and strategy not in engine.STRATEGIES:
        raise UserError(f"unknown strategy {strategy!r} (choose from "
                        f"{', '.join(engine.STRATEGIES)})")
    old_kasan = set_kasan(kasan)
    old_panic = set_panic_on_warn(panic_on_warn)
    try:
        result = engine.explore(model.setup, model.threads, strategy=strategy,
                                max_executions=max_executions, max_steps=max_steps,
                                preemption_bound=preemption_bound, seed=seed,
                                check=model.check, invariant=model.invariant,
                                observe=model.observe, progress=progress, stop=stop,
                                snapshots=snapshots)
    except SetupFinding as exc:
        result = exc.result(strategy if isinstance(strategy, str) else strategy.name)
    finally:
        set_kasan(old_kasan)
        set_panic_on_warn(old_panic)
    _raise_if_variant_raised(kernel_cls, result)
    return CheckResult(kernel_cls.name, scen.name, result.strategy, dict(model.knobs), result,
                       model, _spec(kernel, kernel_cls.name), _spec(scenario, scen.name), kasan,
                       panic_on_warn)


def replay(kernel: str | type[V5_10], scenario: str | Scenario, schedule: str, *,
           knobs: dict[str, str] | None = None, kasan: bool = True,
           panic_on_warn: bool = True, max_steps: int = 1_000_000) -> CheckResult:
    kernel_cls = resolve_kernel(kernel) if isinstance(kernel, str) else kernel
    scen = resolve_scenario(scenario) if isinstance(scenario, str) else scenario
    model = build_model(kernel_cls, scen, knobs)
    old_kasan = set_kasan(kasan)
    old_panic = set_panic_on_warn(panic_on_warn)
    try:
        result = engine.replay(model.setup, model.threads, schedule, check=model.check,
                               invariant=model.invariant, observe=model.observe,
                               max_steps=max_steps)
    except SetupFinding as exc:
        result = engine.Result(strategy="replay", executions=1, complete=True,
                               violation=exc.violation, elapsed=0.0)
    except engine.TokenError as exc:
        raise UserError(f"--schedule: {exc}") from None
    except engine.ReplayMismatch as exc:
        raise UserError(f"--schedule does not fit kernel {kernel_cls.name} on scenario "
                        f"{scen.name}: {exc}") from None
    finally:
        set_kasan(old_kasan)
        set_panic_on_warn(old_panic)
    _raise_if_variant_raised(kernel_cls, result)
    return CheckResult(kernel_cls.name, scen.name, "replay", dict(model.knobs), result, model,
                       _spec(kernel, kernel_cls.name), _spec(scenario, scen.name), kasan,
                       panic_on_warn)


def _spec(given: Any, name: str) -> str:
    return given if isinstance(given, str) else name


__all__ = ["BUILTIN", "KNOBS", "CheckResult", "Model", "UserError", "build_model", "check",
           "replay", "snapshot_roots"]
