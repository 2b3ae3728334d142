"""pytest plugin (entry point ``pytest11``): check kernel variants from a test suite.

A test reads::

    def test_my_patch(tdpmmu_check):
        tdpmmu_check("my_patch.py", "seed-bug").assert_verified()

    def test_v5_10_has_the_bug(tdpmmu_check):
        tdpmmu_check("v5.10", "seed-bug").assert_finds("BUG", function="kvm_mmu_get_root")

A failed assertion shows the text report and the replay command.  A variant
that cannot be loaded, or whose Python code raised inside a model thread, is a
pytest *error* (the test's tool broke), not a failure (the kernel broke).
``--tdpmmu-strategy`` and ``--tdpmmu-max-executions`` set what a call does not
pin; checks marked ``@pytest.mark.tdpmmu_long`` run only with ``--tdpmmu-long``.
The plugin keeps no state across tests, so it runs under pytest-xdist as is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .report import kinds

LONG_MARKER = "tdpmmu_long"


class VariantError(Exception):
    """The variant or scenario under test is broken itself: a pytest error."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tdpmmu", "tdpmmu model checking")
    group.addoption("--tdpmmu-strategy", default="dpor",
                    choices=("dfs", "dpor", "bounded", "pct", "random"),
                    help="strategy of tdpmmu_check calls that do not name one (default dpor)")
    group.addoption("--tdpmmu-max-executions", type=int, default=None, metavar="N",
                    help="executions of tdpmmu_check calls that do not set it (default: "
                    "the whole search for dfs/dpor/bounded, 1000 for pct/random)")
    group.addoption("--tdpmmu-long", action="store_true", default=False,
                    help=f"also run tests marked {LONG_MARKER} (default: skip them)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{LONG_MARKER}: a long tdpmmu check; runs only with "
                            "--tdpmmu-long")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--tdpmmu-long"):
        return
    skip = pytest.mark.skip(reason=f"{LONG_MARKER}: run with --tdpmmu-long")
    for item in items:
        if item.get_closest_marker(LONG_MARKER) is not None:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    outcome = yield
    rep = outcome.get_result()
    if call.excinfo is not None and call.excinfo.errisinstance(VariantError):
        rep.tdpmmu_variant_error = True


def pytest_report_teststatus(report: pytest.TestReport,
                             config: pytest.Config) -> tuple[str, str, str] | None:
    if report.failed and getattr(report, "tdpmmu_variant_error", False):
        return "error", "E", "ERROR"
    return None


class Outcome:
    """What one ``tdpmmu_check`` call found, with pytest assertions on it."""

    def __init__(self, res: Any, bounded: bool, width: int | None = None) -> None:
        self.result = res
        self._bounded = bounded
        self._width = width

    @property
    def violation(self) -> Any:
        return self.result.violation

    @property
    def replay_command(self) -> str:
        from .report import replay_command
        return replay_command(self.result)

    def report(self) -> str:
        from .report import ok_report, violation_report
        return (violation_report(self.result, explain=True, width=self._width) if self.violation
                else ok_report(self.result))

    def _raise_if_broken(self, wanted: str | None = None) -> None:
        v = self.violation
        if v is not None and v.kind == kinds.EXCEPTION and wanted != kinds.EXCEPTION:
            raise VariantError(f"the model raised: {v.message}\n\n{self.report()}")

    def assert_verified(self, require_complete: bool | None = None) -> Outcome:
        """No interleaving breaks anything.  ``require_complete`` (default: unless
        the run was bounded by max_executions or is a sampling strategy) also asks
        that the search covered every interleaving."""
        self._raise_if_broken()
        r = self.result
        if self.violation is not None:
            pytest.fail(f"{r.kernel} on {r.scenario}: {kinds.kind_of(self.violation)} found"
                        f"\n\n{self.report()}", pytrace=False)
        if require_complete is None:
            require_complete = not self._bounded
        if require_complete and not r.result.complete:
            pytest.fail(f"{r.kernel} on {r.scenario}: no violation, but the search is "
                        f"incomplete (cut by {r.result.cut_by})\n\n{self.report()}",
                        pytrace=False)
        return self

    def assert_finds(self, kind: str, *, function: str | None = None,
                     message: str | None = None) -> Outcome:
        """A finding of ``kind`` (a kind of :mod:`tdpmmu.report.kinds` or a property
        name), optionally in ``function`` and with ``message`` in its text."""
        try:
            kinds.check_query(kind)
        except ValueError as exc:
            raise VariantError(str(exc)) from None
        self._raise_if_broken(kind)
        v = self.violation
        r = self.result
        want = kind + (f" in {function}" if function else "")
        if v is None:
            pytest.fail(f"{r.kernel} on {r.scenario}: expected {want}, found none\n\n"
                        f"{self.report()}", pytrace=False)
        got = f"{kinds.kind_of(v)}" + (f" in {v.function}" if v.function else "")
        wrong = (not kinds.matches(v, kind) or (function is not None and v.function != function)
                 or (message is not None and message not in v.message))
        if wrong:
            pytest.fail(f"{r.kernel} on {r.scenario}: expected {want}"
                        f"{f' with {message!r}' if message else ''}, found {got}: {v.message}"
                        f"\n\n{self.report()}", pytrace=False)
        return self


def _resolve(spec: str, base: Path) -> str:
    """A file named relative to the test's directory, else the spec as given."""
    if spec.endswith((".py", ".toml")) and not Path(spec).is_absolute():
        candidate = base / spec
        if candidate.exists():
            return str(candidate)
    return spec


@pytest.fixture
def tdpmmu_check(request: pytest.FixtureRequest) -> Callable[..., Outcome]:
    """``tdpmmu_check(kernel, scenario, **options)``: run a check, return an
    :class:`Outcome`.  ``kernel`` is a version name or a variant file, ``scenario``
    a scenario name or file (files relative to the test's directory);
    options are those of :func:`tdpmmu.checker.check`."""
    config = request.config
    base = Path(str(request.path)).parent

    def run(kernel: str, scenario: str, **options: Any) -> Outcome:
        from .checker import UserError, check
        options.setdefault("strategy", config.getoption("--tdpmmu-strategy"))
        if "max_executions" not in options:
            options["max_executions"] = config.getoption("--tdpmmu-max-executions")
        bounded = (options["max_executions"] is not None
                   or options["strategy"] in ("pct", "random"))
        try:
            res = check(_resolve(kernel, base), _resolve(scenario, base), **options)
        except UserError as exc:
            raise VariantError(str(exc)) from None
        return Outcome(res, bounded, config.get_terminal_writer().fullwidth)

    return run
