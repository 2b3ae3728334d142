"""A long livelock's page folds its repeated cycles instead of growing a row per step."""

from __future__ import annotations

from types import SimpleNamespace

from tdpmmu.engine import Var, explore
from tdpmmu.report.html import to_html


def test_livelock_cycles_are_folded():
    def setup():
        return Var(0, name="flag")

    def spinner(flag):
        while flag.load() == 0:
            pass

    result = explore(setup, [spinner], strategy="dfs", max_steps=2000)
    v = result.violation
    assert v is not None and v.kind == "livelock" and len(v.trace) >= 2000
    res = SimpleNamespace(violation=v, result=result, kernel="k", scenario="s",
                          kernel_spec="k", scenario_spec="s", knobs={}, kasan=True,
                          panic_on_warn=True, strategy="dfs", thread_names=["spinner"])
    page = to_html(res)
    rows = page.count('class="num"')
    assert rows < 20, rows
    assert "repetitions of the 1 steps" in page and "folded" in page
    assert len(page) < 50_000
