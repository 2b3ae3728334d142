"""``vcpu->mutex``: every vCPU ioctl of one vCPU runs under it, so two never
overlap.  The scenario format only lets a vCPU's own thread issue its ioctls;
here two model threads issue them on one vCPU to show the lock is real (a
version without it interleaves them)."""

from __future__ import annotations

from typing import Any

from kvm_testlib import action, run_vcpu, scenario

from tdpmmu import engine
from tdpmmu.checker import build_model
from tdpmmu.kvm.versions import V5_11
from tdpmmu.scenarios.actions import ACTIONS


class Recording(V5_11):
    """Notes, at every ``kvm_mmu_unload``, whether a KVM_RUN of the same vCPU is
    inside ``kvm_arch_vcpu_ioctl_run`` at that moment."""

    overlaps: list[bool] = []

    def kvm_arch_vcpu_ioctl_run(self, vcpu: Any, program: Any) -> None:
        vcpu.in_run = True
        super().kvm_arch_vcpu_ioctl_run(vcpu, program)
        vcpu.in_run = False

    def kvm_mmu_unload(self, vcpu: Any) -> None:
        type(self).overlaps.append(getattr(vcpu, "in_run", False))
        super().kvm_mmu_unload(vcpu)


class WithoutMutex(Recording):
    def kvm_vcpu_ioctl(self, vcpu: Any, ioctl: str, *args: Any) -> None:
        # The what-if: the ioctl's body without vcpu->mutex.
        from tdpmmu.kvm.kvm_main import KVM_RUN
        if ioctl == KVM_RUN:
            self.kvm_arch_vcpu_ioctl_run(vcpu, *args)
        else:
            self.kvm_mmu_unload(vcpu)


def explore_two_ioctls(kernel: type[Recording]) -> tuple[list[bool], engine.Result]:
    """KVM_RUN (two guest writes) on one thread, the unloading exit of the same
    vCPU on another: every interleaving, by dfs."""
    kernel.overlaps = []
    model = build_model(kernel, scenario([run_vcpu(0, "write 0x1")]))
    run = action("vcpu_run", vcpu=0, guest=["write 0x2", "write 0x3"])
    unload = action("vcpu_unload", vcpu=0)
    threads = [("run", lambda w: ACTIONS["vcpu_run"](w, run)),
               ("unload", lambda w: ACTIONS["vcpu_unload"](w, unload))]
    res = engine.explore(model.setup, threads, strategy="dfs", max_executions=5000)
    return kernel.overlaps, res


def test_vcpu_ioctls_of_one_vcpu_never_overlap():
    overlaps, res = explore_two_ioctls(Recording)
    assert res.complete and res.violation is None, res.violation
    assert overlaps and not any(overlaps)


def test_without_vcpu_mutex_they_do():
    """The control: without the lock the unload runs in the middle of KVM_RUN
    and frees the root the vCPU's hardware walk is using."""
    overlaps, res = explore_two_ioctls(WithoutMutex)
    assert any(overlaps)
    assert res.violation is not None and res.violation.kind == "KASAN", res.violation
    assert "use-after-free" in res.violation.message
