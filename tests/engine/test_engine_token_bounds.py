"""Schedule tokens from untrusted input: bounded before they are expanded."""

from __future__ import annotations

import base64
import time
import zlib

import pytest

from tdpmmu.engine import TokenError
from tdpmmu.engine.schedule import PREFIX, decode_full, encode


def _token(raw: bytes, tail: bytes = b"") -> str:
    packed = zlib.compress(raw, 9) + tail
    return PREFIX + base64.urlsafe_b64encode(packed).decode("ascii").rstrip("=")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def test_a_huge_run_length_is_rejected_before_it_is_expanded():
    token = _token(_varint(0) + _varint(1 << 40))  # thread 0, 2**40 steps
    start = time.process_time()
    with pytest.raises(TokenError, match="more than 5000 steps"):
        decode_full(token, max_steps=5000)
    assert time.process_time() - start < 1.0


def test_a_run_length_beyond_any_integer_is_rejected():
    token = _token(_varint(0) + b"\xff" * 200 + b"\x01")
    with pytest.raises(TokenError):
        decode_full(token, max_steps=5000)


def test_many_choices_are_bounded_too():
    token = _token(_varint(3) * 20_000)
    with pytest.raises(TokenError, match="more than"):
        decode_full(token, max_steps=5000)


def test_trailing_data_after_the_zlib_stream_is_rejected():
    good = encode([0, 0, 2, 0])
    assert decode_full(good, max_steps=10) == ([0, 0, 2, 0], False)
    body = good[len(PREFIX):]
    packed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    bad = PREFIX + base64.urlsafe_b64encode(packed + b"junk").decode().rstrip("=")
    with pytest.raises(TokenError, match="trailing"):
        decode_full(bad, max_steps=10)


def test_a_token_within_the_bound_decodes():
    decisions = [0] * 4000 + [2] * 1000 + [5]
    assert decode_full(encode(decisions), max_steps=5000) == (decisions, False)
