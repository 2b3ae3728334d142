"""Variant files: a user's subclass of a built-in version, loaded by path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tdpmmu.checker import UserError, check
from tdpmmu.kvm.versions import V5_10, V5_11, KernelError, load_kernel

# The v5.11 code with its fix to kvm_tdp_mmu_zap_gfn_range reverted: references
# taken and dropped by hand, as in v5.10.  This is a patch a user mirrors.
BY_HAND = '''\
from tdpmmu.kvm.versions import V5_11


class ZapByHand(V5_11):
    """v5.11 with kvm_tdp_mmu_zap_gfn_range as in v5.10."""

    name = "v5.11-zap-by-hand"

    def kvm_tdp_mmu_zap_gfn_range(self, kvm, start, end):
        flush = False
        for root in self.for_each_tdp_mmu_root(kvm):
            self.kvm_mmu_get_root(kvm, root)
            flush |= self.zap_gfn_range(kvm, root, start, end, True)
            self.kvm_mmu_put_root(kvm, root)
        return flush
'''


def write(tmp_path: Path, name: str, text: str) -> str:
    f = tmp_path / name
    f.write_text(textwrap.dedent(text))
    return str(f)


def kernel_error(spec: str) -> str:
    with pytest.raises(KernelError) as exc:
        load_kernel(spec)
    msg = str(exc.value)
    assert "\n" not in msg, msg
    return msg


def test_builtin_names_load():
    assert load_kernel("v5.10") is V5_10
    assert load_kernel("v5.11") is V5_11


def test_variant_class_is_loaded(tmp_path):
    cls = load_kernel(write(tmp_path, "zap_by_hand.py", BY_HAND))
    assert cls.__name__ == "ZapByHand" and issubclass(cls, V5_11)
    assert cls.name == "v5.11-zap-by-hand"
    assert "kvm_tdp_mmu_zap_gfn_range" in vars(cls)
    assert cls.kvm_tdp_mmu_handle_hva_range is V5_11.kvm_tdp_mmu_handle_hva_range


def test_variant_reproduces_the_seed_bug(tmp_path):
    path = write(tmp_path, "zap_by_hand.py", BY_HAND)
    res = check(path, "seed-bug", strategy="dpor")
    assert res.kernel == "v5.11-zap-by-hand"
    assert res.kernel_spec == path
    v = res.violation
    assert v is not None
    assert v.kind == "BUG"
    assert v.message == "kernel BUG at arch/x86/kvm/mmu/mmu_internal.h: kvm_mmu_get_root"
    assert v.function == "kvm_mmu_get_root"


def test_variant_class_can_be_passed_directly(tmp_path):
    cls = load_kernel(write(tmp_path, "zap_by_hand.py", BY_HAND))
    res = check(cls, "seed-bug", strategy="dpor")
    assert res.violation is not None and res.violation.function == "kvm_mmu_get_root"


def test_an_unchanged_subclass_finds_nothing_where_the_variant_does(tmp_path):
    variant = check(write(tmp_path, "zap_by_hand.py", BY_HAND), "seed-bug", strategy="dpor")
    n = variant.result.executions
    plain = write(tmp_path, "plain_v511.py", """\
        from tdpmmu.kvm.versions import V5_11

        class Plain(V5_11):
            pass
        """)
    res = check(plain, "seed-bug", strategy="dpor", max_executions=2 * n)
    assert res.violation is None
    assert res.kernel == "plain_v511"  # a built-in's name is not reused


def test_last_subclass_wins(tmp_path):
    cls = load_kernel(write(tmp_path, "two.py", """\
        from tdpmmu.kvm.versions import V5_10, V5_11

        class First(V5_10):
            name = "first"

        class Second(V5_11):
            name = "second"
        """))
    assert cls.__name__ == "Second"


def test_imported_builtin_is_not_taken_for_the_variant(tmp_path):
    msg = kernel_error(write(tmp_path, "only_import.py", """\
        from tdpmmu.kvm.versions import V5_11
        Alias = V5_11
        """))
    assert "defines no subclass of a built-in kernel version" in msg


# ------------------------------------------------------------------ errors
def test_missing_file(tmp_path):
    spec = str(tmp_path / "nope.py")
    assert kernel_error(spec) == f"{spec}: no such variant file"


def test_unknown_name():
    msg = kernel_error("v4.19")
    assert msg.startswith("unknown kernel 'v4.19'")
    for name in ("v5.10", "v5.10-fix-v1", "v5.11"):
        assert name in msg


def test_syntax_error_names_file_and_line(tmp_path):
    spec = write(tmp_path, "broken.py", """\
        from tdpmmu.kvm.versions import V5_11

        class Broken(V5_11)
            pass
        """)
    msg = kernel_error(spec)
    assert msg.startswith(f"{spec}:3: syntax error: ")


def test_no_subclass(tmp_path):
    spec = write(tmp_path, "empty.py", "x = 1\n")
    msg = kernel_error(spec)
    assert msg.startswith(f"{spec}: defines no subclass of a built-in kernel version")
    assert "V5_11" in msg


def test_import_error(tmp_path):
    spec = write(tmp_path, "imports.py", """\
        import no_such_module_for_tdpmmu
        from tdpmmu.kvm.versions import V5_11

        class V(V5_11):
            pass
        """)
    msg = kernel_error(spec)
    assert msg.startswith(f"{spec}: cannot load: ModuleNotFoundError: ")
    assert "no_such_module_for_tdpmmu" in msg


def test_exception_at_import(tmp_path):
    spec = write(tmp_path, "raises.py", "raise RuntimeError('patch not ready')\n")
    assert kernel_error(spec) == f"{spec}: cannot load: RuntimeError: patch not ready"


def test_check_turns_kernel_errors_into_user_errors(tmp_path):
    with pytest.raises(UserError) as exc:
        check(str(tmp_path / "nope.py"), "seed-bug")
    assert "no such variant file" in str(exc.value)


def test_bad_base_order_is_one_line(tmp_path):
    spec = write(tmp_path, "mro.py", """\
        from tdpmmu.kvm.versions import V5_10, V5_11

        class Both(V5_10, V5_11):
            pass
        """)
    msg = kernel_error(spec)
    assert msg.startswith(f"{spec}: cannot load: TypeError: ")


def test_syntax_error_in_an_imported_helper_names_the_helper(tmp_path, monkeypatch):
    helper = write(tmp_path, "variant_helper_bad.py", "x = 1\ny = (\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = write(tmp_path, "uses_helper.py", """\
        import variant_helper_bad
        from tdpmmu.kvm.versions import V5_11

        class V(V5_11):
            pass
        """)
    msg = kernel_error(spec)
    assert msg.startswith(f"{helper}:2: syntax error")
