"""The pytest plugin, driven through ``pytester`` as a user's test suite would use it."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

pytest.importorskip("xdist")


def test_passing_checks(pytester):
    pytester.makepyfile("""
        def test_fixed(tdpmmu_check):
            tdpmmu_check("v5.11", "teardown").assert_verified()

        def test_bug(tdpmmu_check):
            tdpmmu_check("v5.10", "teardown").assert_finds("BUG", function="kvm_mmu_get_root")
    """)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_failing_check_prints_the_report_and_a_replay_command_that_reproduces(pytester):
    pytester.makepyfile("""
        def test_v5_10(tdpmmu_check):
            tdpmmu_check("v5.10", "teardown").assert_verified()
    """)
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "v5.10 on teardown: BUG found" in out
    assert "kernel BUG at arch/x86/kvm/mmu/mmu_internal.h: kvm_mmu_get_root" in out
    m = re.search(r"^\s*(tdpmmu replay --kernel v5.10 --scenario teardown --schedule \S+)$",
                  out, re.M)
    assert m, out
    argv = shlex.split(m.group(1))[1:]
    proc = subprocess.run([sys.executable, "-m", "tdpmmu.cli", *argv], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1 and "kernel BUG" in proc.stdout, proc.stderr


def test_wrong_finding_fails_naming_what_was_found(pytester):
    pytester.makepyfile("""
        def test_expect_gpf(tdpmmu_check):
            tdpmmu_check("v5.10", "teardown").assert_finds("GPF")

        def test_expect_bug_elsewhere(tdpmmu_check):
            tdpmmu_check("v5.10", "teardown").assert_finds("BUG", function="kvm_mmu_put_root")

        def test_expect_bug_on_fixed(tdpmmu_check):
            tdpmmu_check("v5.11", "teardown").assert_finds("BUG")
    """)
    result = pytester.runpytest()
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*expected GPF, found BUG in kvm_mmu_get_root*",
                                 "*expected BUG in kvm_mmu_put_root, found BUG in "
                                 "kvm_mmu_get_root*",
                                 "*v5.11 on teardown: expected BUG, found none*"])


def test_variant_that_raises_is_an_error_not_a_failure(pytester):
    pytester.makepyfile(broken_patch="""
        from tdpmmu.kvm.versions import V5_11

        class Broken(V5_11):
            name = "v5.11+broken"

            def kvm_tdp_mmu_zap_all(self, kvm):
                raise ZeroDivisionError("oops in my patch")
    """)
    pytester.makepyfile(syntax_error_patch="class P(\n")
    pytester.makepyfile(test_it="""
        def test_broken(tdpmmu_check):
            tdpmmu_check("broken_patch.py", "teardown").assert_verified()

        def test_unloadable(tdpmmu_check):
            tdpmmu_check("syntax_error_patch.py", "teardown").assert_verified()

        def test_typo_in_kind(tdpmmu_check):
            tdpmmu_check("v5.10", "teardown").assert_finds("BUG_ON")
    """)
    result = pytester.runpytest("test_it.py")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(["*ZeroDivisionError: oops in my patch*"])


def test_command_line_options_apply_to_calls_that_do_not_pin_them(pytester):
    pytester.makepyfile("""
        def test_default(tdpmmu_check, pytestconfig):
            o = tdpmmu_check("v5.11", "teardown")
            assert o.result.strategy == "random" and o.result.result.executions == 3

        def test_pinned(tdpmmu_check):
            # bounded: neither the command line's strategy nor the default
            # (a dfs of teardown takes minutes)
            o = tdpmmu_check("v5.11", "teardown", strategy="bounded", max_executions=None)
            assert o.result.strategy == "bounded" and o.result.result.executions > 3
    """)
    result = pytester.runpytest("--tdpmmu-strategy", "random", "--tdpmmu-max-executions", "3")
    result.assert_outcomes(passed=2)


def test_long_checks_run_only_when_asked(pytester):
    pytester.makepyfile("""
        import pytest

        @pytest.mark.tdpmmu_long
        def test_long(tdpmmu_check):
            tdpmmu_check("v5.11", "teardown").assert_verified()
    """)
    pytester.runpytest("--strict-markers").assert_outcomes(skipped=1)
    pytester.runpytest("--strict-markers", "--tdpmmu-long").assert_outcomes(passed=1)


def test_runs_under_xdist(pytester):
    pytester.makepyfile("""
        def test_fixed(tdpmmu_check):
            tdpmmu_check("v5.11", "teardown").assert_verified()

        def test_bug(tdpmmu_check):
            tdpmmu_check("v5.10", "teardown").assert_verified()
    """)
    result = pytester.runpytest_subprocess("-n", "2")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*tdpmmu replay --kernel v5.10 --scenario teardown*"])
