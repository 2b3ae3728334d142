"""The HTML report in a real browser (headless Chromium): a screenshot, and the
geometry of what it draws checked against the trace itself, not markers: each
lock bar spans exactly the rows from the step that took the lock to the step
that released it, and each root's strip changes exactly at the steps where the
trace's notes get, put or free that root."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tdpmmu import checker
from tdpmmu.report import to_json
from tdpmmu.report.html import to_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine "
                                "(.ci/run installs Debian's `chromium` where apt-get works)")

# Appended by the test only: writes every drawn element's box into the DOM.
GEOMETRY = """<script>
const box = e => { const r = e.getBoundingClientRect();
  return {top: r.top, bottom: r.bottom, left: r.left, right: r.right}; };
const out = {rows: {}, bars: [], segs: [], width: document.documentElement.clientWidth,
             grid: box(document.getElementById('trace'))};
for (const e of document.querySelectorAll('.num[data-step]')) out.rows[e.dataset.step] = box(e);
for (const e of document.querySelectorAll('.bar')) out.bars.push({...e.dataset, ...box(e)});
for (const e of document.querySelectorAll('.seg')) out.segs.push({...e.dataset, ...box(e)});
const pre = document.createElement('pre'); pre.id = 'geometry';
pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
</script>"""

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium(tmp_path: Path, page: Path, *args: str) -> str:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    profile.mkdir()
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}",
                           "--window-size=1400,1800", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.fixture(scope="module")
def seed_bug():
    return checker.check("v5.10", "seed-bug")


def lock_holds_from_trace(trace: list[dict]) -> list[tuple[str, str, int, int]]:
    """(thread, lock, first step, last step) read straight from the JSON trace."""
    pat = re.compile(r"^(spin_lock|spin_unlock|read_lock|read_unlock|write_lock|write_unlock|"
                     r"mutex_lock|mutex_unlock|srcu_read_lock|srcu_read_unlock)\((.*)\)$")
    open_: dict[tuple[str, str], int] = {}
    out = []
    for st in trace:
        m = pat.match(st["op"])
        if not m:
            continue
        key = (st["thread"], m.group(2))
        if "unlock" in m.group(1):
            out.append((*key, open_.pop(key), st["step"]))
        else:
            open_[key] = st["step"]
    out += [(*key, start, trace[-1]["step"]) for key, start in open_.items()]
    return sorted(out)


def test_html_geometry_in_headless_chromium(tmp_path, seed_bug):
    page = tmp_path / "report.html"
    page.write_text(to_html(seed_bug).replace("</body>", GEOMETRY + "</body>"))
    shot = tmp_path / "report.png"
    chromium(tmp_path, page, f"--screenshot={shot}")
    assert shot.exists() and shot.stat().st_size > 10_000
    dom = chromium(tmp_path, page, "--dump-dom")
    geo = json.loads(re.search(r'<pre id="geometry">(.*?)</pre>', dom, re.S).group(1)
                     .replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    rows = {int(k): v for k, v in geo["rows"].items()}
    trace = to_json(seed_bug)["violation"]["trace"]
    assert len(rows) == len(trace)
    # the page uses its width
    assert geo["grid"]["right"] - geo["grid"]["left"] > 0.9 * geo["width"]

    expected = lock_holds_from_trace(trace)
    drawn = sorted((b["thread"], b["lock"], int(b["start"]), int(b["end"])) for b in geo["bars"])
    assert drawn == expected
    assert any(lock == "kvm->mmu_lock" for _t, lock, _s, _e in drawn)
    for b in geo["bars"]:
        top, bottom = rows[int(b["start"])]["top"], rows[int(b["end"])]["bottom"]
        assert abs(b["top"] - top) <= 1 and abs(b["bottom"] - bottom) <= 1, (b, top, bottom)

    # root strips: a new segment starts exactly where a note gets/puts/frees the root
    ref_steps: dict[str, set[int]] = {}
    for st in trace:
        for note in st["notes"]:
            m = re.search(r"\b(?:get|put|free) (r\d+)\b", note)
            if m:
                ref_steps.setdefault(m.group(1), set()).add(st["step"])
    assert ref_steps.get("r0")
    for root, steps in ref_steps.items():
        segs = sorted((s for s in geo["segs"] if s["root"] == root), key=lambda s: s["top"])
        starts = [int(s["start"]) for s in segs]
        assert set(starts[1:]) == steps, (root, starts, steps)
        for s in segs:
            assert abs(s["top"] - rows[int(s["start"])]["top"]) <= 1
            assert abs(s["bottom"] - rows[int(s["end"])]["bottom"]) <= 1
        # the count a segment shows is the one the trace's roots list has there
        for s in segs:
            roots = trace[int(s["start"])]["roots"]
            if s["state"] == "listed":
                assert f"{root}[" in roots and roots.split(f"{root}[")[1].split(":")[1] \
                    .split()[0].startswith(s["count"])


def test_html_escapes_user_strings_and_is_self_contained(seed_bug):
    import copy
    res = copy.copy(seed_bug)
    res.scenario = "<script>alert(1)</script>"
    page = to_html(res)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert "http://" not in page and "https://" not in page and "src=" not in page
