"""The CLI on a variant that spins without a scheduling point: a soft lockup
finding (``engine.watchdog``), exit 1, its loop named -- here in the
scenario's setup (seed-bug's vcpu0 loads its root there); ``TDPMMU_SOFT_LOCKUP``
sets the threshold in every process of the run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

VARIANT = textwrap.dedent('''
    from tdpmmu.kvm.structs import INVALID_PAGE
    from tdpmmu.kvm.versions import V5_11


    class SpinningLoad(V5_11):
        """kvm_mmu_load waits for a root to appear instead of allocating it."""

        name = "v5.11+spinning-load"

        def kvm_mmu_load(self, vcpu):
            while vcpu.mmu.root_hpa == INVALID_PAGE:
                pass
            return super().kvm_mmu_load(vcpu)
''')


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_the_cli_reports_a_soft_lockup_and_exits_1(tmp_path, jobs):
    f = tmp_path / "spin.py"
    f.write_text(VARIANT)
    env = dict(os.environ, TDPMMU_SOFT_LOCKUP="0.5")
    out = subprocess.run([sys.executable, "-m", "tdpmmu.cli", "check", "--kernel", str(f),
                          "--scenario", "seed-bug", "-j", jobs], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 1, out.stderr
    assert "BUG: soft lockup - setup stuck for 0.5s of CPU" in out.stdout, out.stdout
    assert "kvm_mmu_load (" in out.stdout and "spin.py:" in out.stdout, out.stdout
