"""KASAN is on by default (issue 9, gap 5); ``--no-kasan`` keeps the reporter's GPF."""

from __future__ import annotations

from typing import Any

from tdpmmu.checker import check
from tdpmmu.cli import main
from tdpmmu.kernel import list_del, lockdep_assert_held
from tdpmmu.kvm.versions import V5_11


class _FreeBeforeZap(V5_11):
    """kvm_tdp_mmu_free_root frees the root page before zapping what it maps."""

    name = "v5.11+free-before-zap"

    def kvm_tdp_mmu_free_root(self, kvm: Any, root: Any) -> None:
        lockdep_assert_held(kvm.mmu_lock)
        list_del(root.link)
        self.free_mmu_page(kvm, root)
        self.zap_gfn_range(kvm, root, 0, self.max_gfn(kvm), False)


def test_use_of_a_freed_root_is_found_with_default_options():
    v = check(_FreeBeforeZap, "teardown").violation
    assert v is not None and v.kind == "KASAN"
    assert "use-after-free" in v.message


def test_no_kasan_keeps_the_first_fix_attempts_gpf(capsys):
    assert main(["check", "--kernel", "v5.10-fix-v1", "--scenario", "seed-bug"]) == 1
    out = capsys.readouterr().out
    assert "KASAN: use-after-free" in out
    assert main(["check", "--kernel", "v5.10-fix-v1", "--scenario", "seed-bug",
                 "--no-kasan"]) == 1
    out = capsys.readouterr().out
    assert "general protection fault" in out and "0xdead000000000100" in out
    assert "--no-kasan" in out  # the replay line carries the option
