"""The legacy (shadow) MMU's direct roots (``tdp_mmu=0``), through the public API
and the CLI: the seed's scenario, the dirty-log ordering what-if on both MMUs,
and a root invalidated while a vCPU holds it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tdpmmu.checker import check, resolve_scenario
from tdpmmu.cli import main
from tdpmmu.scenarios.format import Scenario

VARIANT = '''
from tdpmmu.kernel import kmem_cache_free
from tdpmmu.kvm.versions import V5_10


class FreeRootEarly(V5_10):
    """The bug: __kvm_mmu_prepare_zap_page frees a root a vCPU still holds."""
    name = "v5.10+free-root-early"

    def _kvm_mmu_prepare_zap_page(self, kvm, sp, invalid_list):
        in_use = sp.root_count
        ret = super()._kvm_mmu_prepare_zap_page(kvm, sp, invalid_list)
        if in_use:
            kmem_cache_free(kvm.mmu_page_header_cache, sp)
        return ret
'''


def test_seed_bug_verifies_on_the_legacy_mmu_of_v5_10() -> None:
    # mmu_free_root_page frees an invalidated legacy root when its count reaches 0.
    res = check("v5.10", "seed-bug", knobs={"tdp_mmu": "0"})
    assert res.violation is None and res.result.complete


def test_seed_bug_still_fails_on_the_tdp_mmu_of_v5_10() -> None:
    res = check("v5.10", "seed-bug")  # the scenario sets tdp_mmu=1
    assert res.violation is not None and res.violation.function == "kvm_mmu_get_root"


@pytest.mark.parametrize("tdp_mmu", ["0", "1"])
def test_dirty_log_wrprot_first_fails_on_both_mmus(tdp_mmu: str) -> None:
    res = check("v5.10", "dirty-log-new-root",
                knobs={"tdp_mmu": tdp_mmu, "dirty-log-order": "wrprot-first"})
    assert res.violation is not None
    assert "dirty-log-complete" in res.violation.message


def enable_only(name: str) -> Scenario:
    """The built-in scenario without its closing ``KVM_GET_DIRTY_LOG``: the race
    the seed's rule is about is the enabling ioctl's (the flag against the
    write-protection), and a write it loses is still judged, by
    ``dirty-log-complete``'s check of the bitmap when the threads are done (what
    the next read would return).  The read only adds a second write-protection
    pass that makes the vCPU's write fault again, multiplying the
    interleavings (17767 executions on the legacy MMU, more than 20000 on the
    TDP MMU, against about 1000 and 1500 without it)."""
    scen = resolve_scenario(name)
    threads = [(t, [a for a in actions if a.op != "get_dirty_log"])
               for t, actions in scen.threads]
    assert threads != scen.threads
    return replace(scen, name=f"{name} (enable only)", threads=threads)


@pytest.mark.parametrize("tdp_mmu", ["0", "1"])
def test_dirty_log_flag_first_verifies_on_both_mmus(tdp_mmu: str) -> None:
    """The seed's rule holds on both MMUs: with the flag set first, no
    interleaving of the enabling with the vCPU's new root and write loses the
    write.  The same scenario fails with write-protection first (so it does
    exercise the race)."""
    scen = enable_only("dirty-log-new-root")
    res = check("v5.10", scen, knobs={"tdp_mmu": tdp_mmu})
    assert res.violation is None and res.result.complete
    res = check("v5.10", scen, knobs={"tdp_mmu": tdp_mmu, "dirty-log-order": "wrprot-first"})
    assert res.violation is not None
    assert "dirty-log-complete" in res.violation.message


@pytest.mark.tdpmmu_long
@pytest.mark.parametrize("tdp_mmu", ["0", "1"])
def test_dirty_log_flag_first_verifies_on_both_mmus_with_the_read(tdp_mmu: str) -> None:
    """The whole built-in scenario, with the dirty-log read after the enabling
    (minutes: see ``enable_only``)."""
    res = check("v5.10", "dirty-log-new-root", knobs={"tdp_mmu": tdp_mmu})
    assert res.violation is None and res.result.complete


def test_a_root_freed_while_a_vcpu_holds_it_is_reported_by_kasan(tmp_path: Path) -> None:
    variant = tmp_path / "free_root_early.py"
    variant.write_text(VARIANT)
    res = check(str(variant), "seed-bug", knobs={"tdp_mmu": "0"})
    assert res.violation is not None
    # The vCPU's last put reads the freed root: KASAN (the property vcpu-root-live
    # names the step the root was freed under it as the root cause).
    assert "KASAN: use-after-free in kvm_mmu_put_root" in res.violation.message


def test_cli_tdp_mmu_option_runs_each_mmu(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "--kernel", "v5.10", "--scenario", "next-root-deleted",
                 "--tdp-mmu", "0", "--tdp-mmu", "1", "-j", "1"])
    out = capsys.readouterr().out
    assert code == 1  # the TDP MMU row has the seed's BUG
    assert "with tdp_mmu=0" in out and "with tdp_mmu=1" in out


def test_cli_tdp_mmu_given_twice_ways_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "--kernel", "v5.10", "--scenario", "seed-bug", "--tdp-mmu", "0",
                 "--knob", "tdp_mmu=1"])
    assert code == 2
    assert "--tdp-mmu" in capsys.readouterr().err


def test_scenario_tdp_mmu_out_of_range_is_one_line_error(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    scen = tmp_path / "bad.toml"
    scen.write_text('name = "bad"\n[vm]\ntdp_mmu = 2\n[[thread]]\nname = "t"\nactions = []\n')
    code = main(["check", "--kernel", "v5.10", "--scenario", str(scen)])
    err = capsys.readouterr().err
    assert code == 2 and "tdp_mmu" in err and len(err.strip().splitlines()) == 1
