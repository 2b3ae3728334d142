"""Hypothesis strategies for the tool's untrusted inputs, and the contract a run
must keep on any of them (shared by ``test_fuzz.py`` and ``bench/fuzz.py``).

The contract: ``tdpmmu`` exits 0 or 1 with a report on stdout, or 2 with
exactly one error line on stderr (after any ``note:``/``warning:`` lines); it
never lets an exception out, and a case runs in bounded time.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import signal
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from tdpmmu import cli
from tdpmmu import engine as engine_pkg
from tdpmmu.kvm.versions import BUILTIN, KNOBS
from tdpmmu.scenarios import scenario_names
from tdpmmu.scenarios.format import OPS

CASE_SECONDS = 120  # a hang guard, far above any case's time: not a timing assertion
BOUNDS = ["--max-executions", "3", "--max-steps", "400", "--jobs", "1"]  # serial: in-process

# ------------------------------------------------------------------ values
def mostly(good: Any, bad: Any, odds: int = 8) -> Any:
    """``good`` ``odds`` times out of ``odds + 1``, else ``bad`` (so most cases
    get past validation and run the model, and some probe each check)."""
    return st.sampled_from([good] * odds + [bad]).flatmap(lambda s: s)


def rarely(draw: Any) -> bool:
    return draw(st.sampled_from([False] * 9 + [True]))


weird_text = st.one_of(
    st.sampled_from(["", " ", "a\nb", "\x1b[2J", "\x00", "'", '"', "\\", "é", "\u2028",
                     "../../etc/passwd", "/dev/zero", "-", "--", "=", "x" * 300]),
    st.text(max_size=20),
)
small_int = st.one_of(st.integers(-2, 40), st.sampled_from([0x100, 0x200, 1 << 40, 1 << 64,
                                                             -(1 << 63)]))
scalar = st.one_of(small_int, st.booleans(), weird_text, st.floats(allow_nan=False,
                                                                    allow_infinity=False))
guest_ins = st.one_of(
    st.builds(lambda k, g: f"{k} {g:#x}", st.sampled_from(["read", "write"]), st.integers(0, 70)),
    st.sampled_from(["smi", "rsm", "write", "read 0x1 0x2", "jump 0x1", "write zz"]),
    weird_text)


@st.composite
def action(draw: Any) -> dict[str, Any]:
    op = draw(mostly(st.sampled_from(sorted(OPS)), st.just("nope"), odds=20))
    required, optional = OPS.get(op, ((), {}))
    out: dict[str, Any] = {"op": op}
    for key in required + tuple(optional):
        if key not in required and draw(st.booleans()) or key in required and rarely(draw):
            continue
        if key == "guest":
            out[key] = draw(mostly(st.lists(guest_ins, min_size=1, max_size=4), scalar))
        elif key in ("vcpu", "slot", "as_id", "first"):
            out[key] = draw(mostly(st.integers(0, 1), scalar))
        elif key == "hva":
            out[key] = draw(mostly(st.sampled_from([0x100, 0x101, 0x200]), scalar))
        else:
            out[key] = draw(mostly(st.integers(1, 8), scalar))
    if rarely(draw):
        out[draw(weird_text) or "extra"] = draw(scalar)
    return out


@st.composite
def scenario_data(draw: Any) -> dict[str, Any]:
    """Mostly well-formed scenarios, some with a wrong field or value."""
    data: dict[str, Any] = {"name": draw(mostly(st.just("fz"), weird_text))}
    if draw(st.booleans()):
        data["vm"] = {"vcpus": draw(mostly(st.integers(1, 2), scalar))}
        if draw(st.booleans()):
            data["vm"]["root_level"] = draw(mostly(st.integers(2, 4), scalar))
    data["memslot"] = draw(st.lists(st.fixed_dictionaries(
        {"id": mostly(st.integers(0, 2), scalar),
         "base_gfn": mostly(st.sampled_from([0, 4, 8]), scalar),
         "npages": mostly(st.integers(1, 4), scalar),
         "hva": mostly(st.sampled_from([0x100, 0x200]), scalar)},
        optional={"as_id": st.integers(0, 1), "log_dirty": st.booleans(),
                  "huge": st.booleans()}), max_size=2))
    if draw(st.booleans()):
        data["setup"] = draw(st.lists(action(), max_size=2))
    names = draw(st.lists(mostly(st.sampled_from(["host", "vcpu0", "vcpu1", "mm"]),
                                 weird_text), min_size=1, max_size=3, unique=True))
    data["thread"] = [{"name": n, "actions": draw(st.lists(action(), min_size=1, max_size=3))}
                      for n in names]
    if rarely(draw):
        data[draw(weird_text) or "extra"] = draw(scalar)
    return data


def toml_string(text: str) -> str:
    """A TOML basic string: backslash, quote and control characters escaped."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def to_toml(data: dict[str, Any]) -> str:
    """A TOML writer for what :func:`scenario_data` makes (no tomli_w needed)."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return toml_string(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{toml_string(k)} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(v)

    lines = []
    tables = {k: v for k, v in data.items() if isinstance(v, dict | list) and k != "name"
              and (isinstance(v, dict) or all(isinstance(x, dict) for x in v))}
    for k, v in data.items():
        if k not in tables:
            lines.append(f"{toml_string(k)} = {value(v)}")
    for k, v in tables.items():
        if isinstance(v, dict):
            lines.append(f"[{toml_string(k)}]")
            lines += [f"{toml_string(kk)} = {value(x)}" for kk, x in v.items()]
        else:
            for item in v:
                lines.append(f"[[{toml_string(k)}]]")
                lines += [f"{toml_string(kk)} = {value(x)}" for kk, x in item.items()]
    return "\n".join(lines) + "\n"


scenario_text = st.one_of(
    scenario_data().map(to_toml),
    scenario_data().map(to_toml).flatmap(lambda t: st.integers(0, len(t)).map(
        lambda i: t[:i])),  # cut short
    st.integers(1, 3000).map(lambda n: "x = " + "[" * n + "]" * n + "\n"),
    st.text(max_size=200),
)

# ------------------------------------------------------------------ variants
KERNEL_NAMES = sorted({n for cls in BUILTIN.values() for n in dir(cls)
                       if not n.startswith("_") and callable(getattr(cls, n))})
BODIES = ["return False", "return 0", "raise ValueError('bad\\nvalue')", "return 1 // 0",
          "return self.no_such_method()", "import sys; sys.exit(0)", "return None",
          "return super().{name}(*args)", "return self.{name}(*args)",
          "raise KeyError({name!r})", "x = [] ; return x[3]"]


@st.composite
def variant_text(draw: Any) -> str:
    bases = sorted(BUILTIN)
    out = ["from tdpmmu.kvm.versions import " + ", ".join(c.__name__ for c in BUILTIN.values()),
           ""]
    for i in range(draw(st.integers(0, 2)) + 1):
        base = BUILTIN[draw(st.sampled_from(bases))].__name__
        out.append(f"class K{i}({base}):")
        if draw(st.booleans()):
            out.append(f"    name = {draw(st.one_of(st.just('my'), weird_text))!r}")
        for _ in range(draw(st.integers(0, 2))):
            name = draw(st.sampled_from(KERNEL_NAMES))
            if rarely(draw):  # a typo
                j = draw(st.integers(0, len(name) - 1))
                name = name[:j] + name[j + 1:] + "x"
            body = draw(st.sampled_from(BODIES)).format(name=name)
            out += [f"    def {name}(self, *args):", f"        {body}"]
        if rarely(draw):
            out.append(f"    {draw(st.sampled_from(list(KNOBS.values())))[0]}x = True")
        out.append("    pass")
        out.append("")
    text = "\n".join(out) + "\n"
    if rarely(draw):
        text = text.replace("class", "clas", 1)  # a syntax error
    if rarely(draw):
        text = "raise SystemExit(0)\n" + text
    return text


# ------------------------------------------------------------------ tokens
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _pack(raw: bytes, tail: bytes = b"") -> str:
    return "s1." + base64.urlsafe_b64encode(zlib.compress(raw) + tail).decode().rstrip("=")


token = st.one_of(
    st.lists(st.integers(0, 1 << 70), max_size=12).map(
        lambda xs: _pack(b"".join(_varint(x) for x in xs))),
    st.lists(st.integers(0, 6), max_size=30).map(lambda ds: engine_pkg.schedule.encode(ds)),
    st.binary(max_size=40).map(lambda b: _pack(b, tail=b"\x00junk" if len(b) % 2 else b"")),
    st.text(max_size=30).map(lambda t: "s1." + t),
    weird_text,
)

# ------------------------------------------------------------------ argv
OPTIONS = ["--kernel", "--scenario", "--strategy", "--max-executions", "--preemption-bound",
           "--seed", "--max-steps", "--knob", "--kasan", "--no-panic-on-warn", "--json",
           "--schedule", "--html", "--help", "-h", "--bogus"]
option_value = st.one_of(
    st.sampled_from(sorted(BUILTIN) + scenario_names() + list(engine_pkg.STRATEGIES)
                    + [f"{k}={c}" for k, (_a, cs, _g, _h) in KNOBS.items() for c in cs]
                    + ["0", "-1", "1", "2", "99999999999999999999", "nan", "x=y", "new-root=",
                       "missing.py", "missing.toml", "/dev/null", "/"]),
    weird_text)


@st.composite
def argv(draw: Any) -> list[str]:
    cmd = draw(st.sampled_from(["check", "check", "replay", "list", "explain", ""]))
    args = [cmd] if cmd else []
    for _ in range(draw(st.integers(0, 6))):
        args.append(draw(st.sampled_from(OPTIONS)))
        if draw(st.integers(0, 4)):
            args.append(draw(option_value))
    if cmd == "check" and "--html" not in args:
        if "--kernel" not in args:
            args += ["--kernel", draw(st.sampled_from(sorted(BUILTIN)))]
        if "--scenario" not in args:
            args += ["--scenario", draw(st.sampled_from(scenario_names()))]
    return args


# ------------------------------------------------------------------ running
@dataclass
class Outcome:
    rc: int
    out: str
    err: str
    kind: str | None = None  # the finding's kind, for exit 1 with --json

    def describe(self) -> str:
        return f"exit {self.rc}" + (f" ({self.kind})" if self.kind else "")


class _Hang(Exception):  # noqa: N818
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Hang(f"a case ran for more than {CASE_SECONDS} s")


@contextlib.contextmanager
def bounded_minimisation() -> Any:
    """Fuzz cases test input handling: keep counterexample minimisation short."""
    real = engine_pkg.explore
    engine_pkg.explore = functools.partial(real, minimize_budget=30)
    try:
        yield
    finally:
        engine_pkg.explore = real


def run(argv: list[str]) -> Outcome:
    """``tdpmmu argv`` in-process, its exit code and output (SystemExit from
    argparse --help counts as an exit)."""
    out, err = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                bounded_minimisation():
            try:
                rc = cli.main(argv)
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else 2
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return Outcome(rc, out.getvalue(), err.getvalue())


def check_contract(argv: list[str], o: Outcome) -> None:
    """The contract of the module docstring, as assertions."""
    where = f"tdpmmu {' '.join(repr(a) for a in argv)}"
    assert o.rc in (0, 1, 2), f"{where}: exit {o.rc}\n{o.err}"
    assert "Traceback" not in o.err, f"{where}: a traceback\n{o.err}"
    assert "\x1b" not in o.out + o.err, f"{where}: a raw escape sequence reached the terminal"
    if o.rc == 2:
        lines = [line for line in o.err.splitlines()
                 if not line.startswith(("tdpmmu: note:", "tdpmmu: warning:"))]
        assert len(lines) == 1 and lines[0].startswith("tdpmmu: error: "), \
            f"{where}: exit 2 needs one error line, got\n{o.err}"
    elif "--help" not in argv and "-h" not in argv and argv[:1] != ["list"]:
        assert o.out.strip(), f"{where}: exit {o.rc} without a report"


def with_file(text: str, suffix: str) -> Any:
    """A temporary file holding ``text`` (a context manager yielding its path)."""
    @contextlib.contextmanager
    def cm() -> Any:
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / f"case{suffix}"
            p.write_text(text, encoding="utf-8", errors="surrogatepass")
            yield str(p)
    return cm()
