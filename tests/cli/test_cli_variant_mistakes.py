"""Variant files whose results would silently mean nothing: misspelled
overrides, several classes, knobs the variant no longer reads, and Python
errors in the variant's own code."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tdpmmu import cli
from tdpmmu.checker import UserError, check, replay
from tdpmmu.kvm.variants import knob_warnings as _knob_warnings
from tdpmmu.kvm.versions import KNOBS, KernelError, load_kernel, load_kernel_notes


def knob_warnings(cls, knobs):
    return _knob_warnings(cls, knobs, KNOBS)


def write(tmp_path: Path, text: str, name: str = "variant.py") -> str:
    f = tmp_path / name
    f.write_text(textwrap.dedent(text))
    return str(f)


def kernel_error(spec: str) -> str:
    with pytest.raises(KernelError) as exc:
        load_kernel(spec)
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


def test_a_misspelled_method_is_an_error_naming_the_closest_kernel_function(tmp_path):
    spec = write(tmp_path, """\
        from tdpmmu.kvm.versions import V5_11

        class Typo(V5_11):
            name = "typo"

            def kvm_tdp_mmu_zap_gfn_rnage(self, kvm, start, end):
                return False
        """)
    msg = kernel_error(spec)
    assert f"{spec}:6" in msg
    assert "kvm_tdp_mmu_zap_gfn_rnage" in msg and "kvm_tdp_mmu_zap_gfn_range" in msg


def test_a_misspelled_knob_attribute_is_an_error(tmp_path):
    spec = write(tmp_path, """\
        from tdpmmu.kvm.versions import V5_11

        class Typo(V5_11):
            list_add_new_root_tial = True
        """)
    msg = kernel_error(spec)
    assert f"{spec}:4" in msg and "list_add_new_root_tail" in msg


def test_a_new_helper_the_variant_calls_is_not_a_misspelling(tmp_path):
    spec = write(tmp_path, """\
        from tdpmmu.kvm.versions import V5_11

        class NewHelper(V5_11):
            def tdp_mmu_zap_root_new(self, kvm, root, start, end):
                return self.zap_gfn_range(kvm, root, start, end, True)

            def kvm_tdp_mmu_zap_gfn_range(self, kvm, start, end):
                flush = False
                for root in self.for_each_tdp_mmu_root_yield_safe(kvm):
                    flush |= self.tdp_mmu_zap_root_new(kvm, root, start, end)
                return flush
        """)
    assert load_kernel(spec).__name__ == "NewHelper"


def test_the_chosen_class_is_said_and_why(tmp_path):
    spec = write(tmp_path, """\
        from tdpmmu.kvm.versions import V5_10, V5_11

        class First(V5_10):
            name = "first"

        class Second(V5_11):
            name = "second"
        """)
    cls, notes = load_kernel_notes(spec)
    assert cls.__name__ == "Second"
    text = " ".join(notes)
    assert "First" in text and "Second" in text and "last" in text


def test_cli_prints_the_chosen_class(tmp_path, capsys):
    spec = write(tmp_path, """\
        from tdpmmu.kvm.versions import V5_11

        class Base(V5_11):
            pass

        class Mine(Base):
            name = "mine"
        """)
    assert cli.main(["check", "--jobs", "1",
                     "--kernel", spec, "--scenario", "next-root-deleted"]) == 0
    err = capsys.readouterr().err
    assert "Mine" in err and "Base" in err


IGNORES_KNOB = """\
    from tdpmmu.kernel import list_add, spin_lock, spin_unlock
    from tdpmmu.kvm.versions import V5_11

    class AlwaysHead(V5_11):
        name = "always-head"

        def get_tdp_mmu_vcpu_root(self, vcpu):
            kvm = vcpu.kvm
            role = self.page_role_for_level(vcpu, vcpu.mmu.shadow_root_level)
            spin_lock(kvm.mmu_lock)
            for root in self.for_each_tdp_mmu_root(kvm):
                if root.role.word == role.word:
                    self.kvm_mmu_get_root(kvm, root)
                    spin_unlock(kvm.mmu_lock)
                    return root
            root = self.alloc_tdp_mmu_page(vcpu, 0, vcpu.mmu.shadow_root_level)
            root.name = f"r{kvm.nr_roots_made}"
            kvm.nr_roots_made += 1
            root.root = root
            root.root_count = 1
            list_add(root.link, kvm.arch.tdp_mmu_roots)
            spin_unlock(kvm.mmu_lock)
            return root
    """


def test_a_knob_the_variant_no_longer_reads_is_a_warning(tmp_path, capsys):
    spec = write(tmp_path, IGNORES_KNOB)
    cls = load_kernel(spec)
    warnings = knob_warnings(cls, {"new-root": "list_add_tail"})
    assert len(warnings) == 1
    assert "new-root" in warnings[0] and "get_tdp_mmu_vcpu_root" in warnings[0]
    assert knob_warnings(cls, {"resched": "never"}) == []
    cli.main(["check", "--jobs", "1", "--kernel", spec, "--scenario", "next-root-deleted",
              "--knob", "new-root=list_add_tail"])
    assert "warning" in capsys.readouterr().err


def test_an_override_of_a_function_the_version_no_longer_calls_is_a_warning(tmp_path, capsys):
    """5.18 renamed handle_removed_tdp_mmu_page to handle_removed_pt: V5_18 still
    inherits the old name, but nothing calls it, so an override of it is a no-op."""
    from tdpmmu.checker import BUILTIN
    from tdpmmu.kvm.variants import dead_override_warnings

    body = """\
        from tdpmmu.kvm.v5_18 import V5_18

        class Mine(V5_18):
            def {name}(self, *args):
                return super().{name}(*args)
        """
    dead = load_kernel(write(tmp_path, body.format(name="handle_removed_tdp_mmu_page")))
    warnings = dead_override_warnings(dead, list(BUILTIN.values()))
    assert len(warnings) == 1
    assert "Mine.handle_removed_tdp_mmu_page: nothing in v5.18's code calls" in warnings[0]
    live = load_kernel(write(tmp_path, body.format(name="handle_removed_pt"), "live.py"))
    assert dead_override_warnings(live, list(BUILTIN.values())) == []
    old = load_kernel(write(tmp_path, body.format(name="handle_removed_tdp_mmu_page")
                            .replace("v5_18", "v5_17").replace("V5_18", "V5_17"), "old.py"))
    assert dead_override_warnings(old, list(BUILTIN.values())) == []
    cli.main(["check", "--jobs", "1", "--kernel", str(tmp_path / "variant.py"),
              "--scenario", "two-vcpus-fault", "--max-executions", "3"])
    assert "warning: Mine.handle_removed_tdp_mmu_page" in capsys.readouterr().err


def test_a_knob_still_read_gives_no_warning():
    assert knob_warnings(load_kernel("v5.11"), {"new-root": "list_add_tail"}) == []


RAISES = """\
    from tdpmmu.kvm.versions import V5_11

    class Broken(V5_11):
        name = "broken"

        def helper(self, root):
            return root.no_such_field

        def kvm_tdp_mmu_zap_gfn_range(self, kvm, start, end):
            for root in self.for_each_tdp_mmu_root_yield_safe(kvm):
                self.helper(root)
            return False
    """


def test_an_exception_in_the_variant_is_your_variant_raised_not_a_finding(tmp_path):
    spec = write(tmp_path, RAISES)
    with pytest.raises(UserError) as exc:
        check(spec, "next-root-deleted")
    msg = str(exc.value)
    assert "\n" not in msg and "your variant raised" in msg and "AttributeError" in msg
    assert f"{spec}:7" in msg and "7 in helper, 11 in kvm_tdp_mmu_zap_gfn_range" in msg


def test_cli_exit_2_for_a_variant_that_raised(tmp_path, capsys):
    spec = write(tmp_path, RAISES)
    assert cli.main(["check", "--jobs", "1",
                     "--kernel", spec, "--scenario", "next-root-deleted"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "your variant raised" in err


def test_a_variant_raising_during_vm_setup_is_exit_2(tmp_path, capsys):
    spec = write(tmp_path, """\
        from tdpmmu.kvm.versions import V5_11

        class BadInit(V5_11):
            def kvm_mmu_init_vm(self, kvm):
                raise RuntimeError("oops")
        """)
    assert cli.main(["check", "--jobs", "1", "--kernel", spec, "--scenario", "seed-bug"]) == 2
    err = capsys.readouterr().err
    assert "your variant raised RuntimeError: oops" in err and f"{spec}:5" in err
    assert "Traceback" not in err


def test_a_kernel_bug_during_setup_is_a_finding(tmp_path):
    # A BUG_ON reached from [[setup]] is a finding of every execution, found in setup.
    spec = write(tmp_path, """\
        from tdpmmu.kernel import BUG_ON
        from tdpmmu.kvm.versions import V5_11

        class SetupBug(V5_11):
            def kvm_mmu_load(self, vcpu):
                BUG_ON(True)
        """)
    res = check(spec, "seed-bug")
    v = res.violation
    assert v is not None and v.kind == "BUG" and v.thread == "setup"
    again = replay(spec, "seed-bug", v.schedule)
    assert again.violation is not None and again.violation.kind == "BUG"


def test_a_python_error_in_kernel_code_fed_by_the_variant_is_exit_2(tmp_path, capsys):
    spec = write(tmp_path, """\
        from tdpmmu.kvm.versions import V5_11

        class NotIterable(V5_11):
            def for_each_tdp_mmu_root_yield_safe(self, kvm):
                return False
        """)
    assert cli.main(["check", "--jobs", "1",
                     "--kernel", spec, "--scenario", "next-root-deleted"]) == 2
    err = capsys.readouterr().err
    assert "TypeError" in err and "running your variant" in err and "not a kernel finding" in err
