"""Schedule tokens: a compact, pasteable encoding of an execution's decisions.

A decision is ``tid * 2`` (thread ``tid`` takes a step) or ``value * 2 + 1`` (a
nondeterministic choice).  Runs of steps by one thread are run-length encoded,
the stream is varint-coded, deflated and base64url-encoded behind a version
prefix, so a 100,000-step execution with few context switches fits in a few
hundred bytes.

An execution cut by the step bound (a livelock) ends with a marker, a run of
length 0 (which encoding never produces otherwise, and older decoders read as
nothing): replaying it stops at the same step and reports the same livelock,
whatever step bound the replay is given.
"""

from __future__ import annotations

import base64
import binascii
import zlib

PREFIX = "s1."


class TokenError(ValueError):
    """A schedule token that cannot be decoded."""


def _put_varint(out: bytearray, n: int) -> None:
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return


def encode(decisions: list[int], step_bound: bool = False) -> str:
    """Encode a decision list as a token (``step_bound``: the step bound cut it there)."""
    out = bytearray()
    i, n = 0, len(decisions)
    while i < n:
        d = decisions[i]
        if d & 1:
            _put_varint(out, d)
            i += 1
            continue
        j = i + 1
        while j < n and decisions[j] == d:
            j += 1
        _put_varint(out, d)
        _put_varint(out, j - i)
        i = j
    if step_bound:
        out += b"\x00\x00"
    packed = zlib.compress(bytes(out), 9)
    return PREFIX + base64.urlsafe_b64encode(packed).decode("ascii").rstrip("=")


DEFAULT_MAX_STEPS = 1_000_000  # a bound for callers that give none
_MAX_VARINT_BYTES = 10  # 64 bits: no decision or run length is longer


def decode(token: str, max_steps: int = DEFAULT_MAX_STEPS) -> list[int]:
    """Decode a token into its decision list, or raise :class:`TokenError`."""
    return decode_full(token, max_steps)[0]


def decode_full(token: str, max_steps: int = DEFAULT_MAX_STEPS) -> tuple[list[int], bool]:
    """Decode a token into its decision list and whether the step bound cut it.

    A token is untrusted input: one with more than ``max_steps`` steps (or as
    many choices) is rejected before anything is expanded, so a short token
    cannot ask for gigabytes; so is anything after the end of the zlib stream.
    """
    token = token.strip()
    if not token.startswith(PREFIX):
        raise TokenError(f"schedule token must start with {PREFIX!r}")
    body = token[len(PREFIX):]
    # Each decision takes at least one byte before compression, plus a run length.
    limit = 2 * _MAX_VARINT_BYTES * (max_steps + 1) + 16
    try:
        packed = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_",
                                  validate=True)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(packed, limit)
        if inflater.unconsumed_tail:
            raise TokenError(f"schedule token is too long (more than {max_steps} steps)")
        raw += inflater.flush()
    except (binascii.Error, zlib.error, ValueError) as exc:
        if isinstance(exc, TokenError):
            raise
        raise TokenError(f"schedule token is corrupt ({exc})") from None
    if not inflater.eof:
        raise TokenError("schedule token is corrupt (its zlib stream is cut short)")
    if inflater.unused_data:
        raise TokenError(f"schedule token has {len(inflater.unused_data)} bytes of trailing "
                         "data after its zlib stream")
    values = []
    cur = shift = 0
    for b in raw:
        cur |= (b & 0x7F) << shift
        if b & 0x80:
            shift += 7
            if shift >= 7 * _MAX_VARINT_BYTES:
                raise TokenError("schedule token is corrupt (a number longer than 64 bits)")
            continue
        values.append(cur)
        cur = shift = 0
    if shift:
        raise TokenError("schedule token is truncated")
    steps = choices = 0
    i = 0
    while i < len(values):  # count first: nothing is expanded past the bound
        if values[i] & 1:
            choices += 1
            i += 1
        else:
            if i + 1 >= len(values):
                raise TokenError("schedule token is truncated")
            steps += values[i + 1]
            i += 2
        if steps > max_steps or choices > max_steps:
            what = "steps" if steps > max_steps else "choices"
            raise TokenError(f"schedule token has more than {max_steps} {what} "
                             "(the bound is --max-steps)")
    decisions: list[int] = []
    step_bound = False
    i = 0
    while i < len(values):
        d = values[i]
        if d & 1:
            decisions.append(d)
            i += 1
        else:
            if values[i + 1] == 0:
                step_bound = True
            decisions.extend([d] * values[i + 1])
            i += 2
    return decisions, step_bound
