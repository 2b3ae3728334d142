"""Fidelity lists: every listed kernel function is modelled under its name or left out
with a reason, for every version that is built in."""

from __future__ import annotations

import pytest

from tdpmmu.kvm import fidelity
from tdpmmu.kvm.versions import BUILTIN

RELEASES = fidelity.versions()


def test_every_list_parses_and_names_its_tree() -> None:
    assert "v5.10" in RELEASES and "v5.11" in RELEASES
    for version in RELEASES:
        fl = fidelity.load(version)
        assert fl is not None and fl.version == version
        assert fl.tree_release, f"{version}: which tree was read?"
        assert fl.functions, f"{version}: empty list"
        for f in fl.functions:
            assert f.file in ("tdp_mmu.c", "tdp_mmu.h", "mmu.c"), (version, f.name)
            assert set(f.touches) <= {"roots", "mmu_lock", "yields"} or \
                f.touches[0].startswith("calls "), (version, f.name, f.touches)


@pytest.mark.parametrize("version", RELEASES)
def test_listed_functions_are_modelled_or_left_out_with_a_reason(version: str) -> None:
    cls = BUILTIN.get(version)
    if cls is None:
        pytest.skip(f"{version} is not modelled yet (not in tdpmmu.kvm.versions.BUILTIN)")
    fl = fidelity.load(version)
    assert fl is not None
    missing = [f.name for f in fl.missing(cls)]
    assert not missing, (f"{version}: listed in {fidelity.file_for(version).name} but neither "
                         f"a method of {cls.__name__} nor left out with a reason: {missing}")


def test_every_listed_release_is_built_in() -> None:
    """Each fidelity list's release is a built-in version (v6.18 included), so the
    coverage test above runs on it instead of skipping it."""
    assert "v6.18" in RELEASES
    assert [v for v in RELEASES if v not in BUILTIN] == []


def test_v6_18_carries_its_root_type_functions() -> None:
    fl = fidelity.load("v6.18")
    assert fl is not None and fl.tree == "gfunkmonk/linux-6.18.2"
    modelled = {f.name for f in fl.modelled(BUILTIN["v6.18"])}
    assert {"tdp_mmu_root_match", "kvm_tdp_mmu_invalidate_roots", "kvm_tdp_mmu_alloc_root",
            "kvm_tdp_mmu_zap_invalidated_roots", "__kvm_tdp_mmu_age_gfn_range",
            "kvm_gfn_range_filter_to_root_types"} <= modelled
    # 6.9 has none of 6.14's root-type functions.
    assert not hasattr(BUILTIN["v6.9"], "tdp_mmu_root_match")


def test_variants_of_a_release_are_measured_against_its_list() -> None:
    assert fidelity.release_of("v5.10-fix-v1") == "v5.10"
    assert fidelity.release_of("v5.11+my-patch") == "v5.11"


def test_a_function_the_class_lacks_is_reported_missing() -> None:
    fl = fidelity.load("v5.11")
    assert fl is not None

    class Bare:
        pass

    # Nothing modelled: all but the left-out functions are missing.
    assert len(fl.missing(Bare)) == sum(1 for f in fl.functions if not f.left_out)
    assert fl.modelled(Bare) == []


def test_kernel_names_with_two_underscores_map_to_one() -> None:
    fl = fidelity.load("v5.11")
    assert fl is not None
    listed = {f.name: f for f in fl.functions}
    assert listed["__tdp_mmu_set_spte"].model_name == "_tdp_mmu_set_spte"
    assert listed["zap_gfn_range"].model_name == "zap_gfn_range"


def test_list_command_shows_coverage_per_version(capsys: pytest.CaptureFixture[str]) -> None:
    from tdpmmu.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    fl = fidelity.load("v5.11")
    assert fl is not None
    n = len(fl.modelled(BUILTIN["v5.11"]))
    assert f"v5.11   {n}/{len(fl.functions)} tdp_mmu.c/mmu.c functions modelled" in out
    legacy = fidelity.legacy_for("v5.11")
    assert legacy is not None
    m = len(legacy.modelled(BUILTIN["v5.11"]))
    assert f"legacy MMU (tdp_mmu=0): {m}/{len(legacy.functions)} of the v5.10 list" in out


@pytest.mark.parametrize("version", list(BUILTIN))
def test_legacy_mmu_root_functions_are_modelled_in_every_version(version: str) -> None:
    """The legacy (shadow) MMU's root-touching mmu.c functions, under the names
    of the newest legacy list not after the version, are carried by the
    version's class (inherited or overridden) or left out with a reason."""
    fl = fidelity.legacy_for(version)
    assert fl is not None and fl.tree_release
    for f in fl.functions:
        assert f.file == "mmu.c"
        assert set(f.touches) <= {"roots", "mmu_lock", "yields"} or \
            f.touches[0].startswith("calls "), (f.name, f.touches)
    missing = [f.name for f in fl.missing(BUILTIN[version])]
    assert not missing, (f"{version}: legacy MMU functions of the {fl.version} list neither "
                         f"modelled nor left out: {missing}")


def test_each_version_is_measured_against_the_legacy_list_of_its_era() -> None:
    assert fidelity.legacy_versions() == ["v5.10", "v5.18", "v6.1", "v6.4"]
    expect = {"v5.10": "v5.10", "v5.10-fix-v1": "v5.10", "v5.13": "v5.10", "v5.17": "v5.10",
              "v5.18": "v5.18", "v6.1": "v6.1", "v6.4": "v6.4", "v6.6": "v6.4",
              "v6.9": "v6.4"}
    for version, listed in expect.items():
        fl = fidelity.legacy_for(version)
        assert fl is not None and fl.version == listed, version


def test_later_legacy_lists_carry_the_renamed_root_functions() -> None:
    """6.0 split kvm_mmu_get_page and renamed the shadow page functions; 6.3/6.4
    renamed __direct_map and the slot rmap walkers; 5.18 added the obsolete-root
    request's functions.  The lists name them, and the versions model them."""
    names = {v: {f.name for f in fidelity.load_legacy(v).functions}  # type: ignore[union-attr]
             for v in fidelity.legacy_versions()}
    assert {"is_obsolete_root", "kvm_mmu_free_obsolete_roots"} <= names["v5.18"]
    assert "is_obsolete_root" not in names["v5.10"]
    split = {"kvm_mmu_get_shadow_page", "__kvm_mmu_get_shadow_page", "kvm_mmu_find_shadow_page",
             "kvm_mmu_alloc_shadow_page", "kvm_mmu_get_child_sp", "kvm_mmu_free_shadow_page",
             "__link_shadow_page"}
    assert split <= names["v6.1"] and not split & names["v5.18"]
    assert "kvm_mmu_get_page" in names["v5.18"] and "kvm_mmu_get_page" not in names["v6.1"]
    assert {"direct_map", "walk_slot_rmaps", "__walk_slot_rmaps"} <= names["v6.4"]
    assert "__direct_map" not in names["v6.4"]
    for version, new in (("v6.1", split), ("v6.4", {"direct_map", "walk_slot_rmaps"})):
        fl = fidelity.load_legacy(version)
        assert fl is not None
        modelled = {f.name for f in fl.modelled(BUILTIN[version])}
        assert new <= modelled, (version, new - modelled)
    # The versions before the renames do not have the new names.
    assert not hasattr(BUILTIN["v5.18"], "kvm_mmu_find_shadow_page")
    assert not hasattr(BUILTIN["v6.1"], "walk_slot_rmaps")


def test_legacy_list_catches_a_class_without_the_legacy_mmu() -> None:
    from tdpmmu.kvm.mmu import Mmu
    fl = fidelity.load_legacy("v5.10")
    assert fl is not None
    missing = {f.name for f in fl.missing(Mmu)}
    assert {"mmu_alloc_root", "kvm_mmu_get_page", "__kvm_mmu_prepare_zap_page",
            "kvm_mmu_commit_zap_page", "kvm_zap_obsolete_pages"} <= missing


@pytest.mark.parametrize("version", [v for v in RELEASES if v in BUILTIN])
def test_reports_name_the_kernel_file_a_version_function_lives_in(version: str) -> None:
    """A report raised in a version's override names the file its list places the
    function in (a v5.18 ``mmu.c`` override is not reported as ``tdp_mmu.c``)."""
    import sys

    from tdpmmu.kernel import callsite

    cls = BUILTIN[version]
    fl = fidelity.load(version)
    assert fl is not None
    checked = 0
    for f in fl.modelled(cls):
        method = getattr(cls, f.model_name)
        module = sys.modules[method.__module__]
        if len(fidelity.kernel_files()[f.model_name]) > 1:
            continue  # listed in two files (a .h inline and its .c body across versions)
        # A frame of code named like the method, run with the method's module globals.
        code = compile("frame = _getframe()", "<frame>", "exec").replace(co_name=f.model_name)
        scope = dict(vars(module), _getframe=sys._getframe)
        exec(code, scope)
        assert callsite.kernel_file(scope["frame"]).endswith("/" + f.file), (f.name, f.file)
        checked += 1
    assert checked
