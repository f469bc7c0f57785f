"""rt/ws/inbound.py: the frame guard, on plain bytes (a client's frames, masked as a client's are)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rt.ws.inbound import FrameGuard, GuardLimits, HeadScanner, Violation

MASK = b"\x37\xfa\x21\x3d"
LIMITS = GuardLimits(max_message_bytes=1024, max_fragments=4)


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    size: int | None = None,
) -> bytes:
    """A client frame; ``size`` overrides the declared payload length."""
    n = len(payload) if size is None else size
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    mask_bit = 0x80 if masked else 0
    if n < 126:
        header = bytes((first, mask_bit | n))
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not masked:
        return header + payload
    return header + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def text(data: str, **kw: object) -> bytes:
    return frame(0x1, data.encode(), **kw)  # type: ignore[arg-type]


def run(data: bytes, limits: GuardLimits = LIMITS) -> tuple[bytes, Violation | None]:
    guard = FrameGuard(limits)
    return guard.feed(data), guard.violation


def test_good_frames_pass_whole() -> None:
    stream = (
        text("hello")
        + frame(0x9, b"ping")
        + text("é" * 10, fin=False)
        + frame(0xA, b"")
        + frame(0x0, "😀".encode())
        + frame(0x8, struct.pack("!H", 1000) + b"bye")
    )
    assert run(stream) == (stream, None)


def test_a_header_declaring_too_much_is_refused_before_its_payload() -> None:
    # 2^62 bytes declared, one byte sent: refused on the header alone, and nothing passes.
    assert run(text("", size=1 << 62)[:14] + b"x") == (
        b"",
        Violation(1009, "a message may have at most 1024 bytes"),
    )


def test_the_size_counts_utf8_bytes_across_fragments() -> None:
    first = text("😀" * 200, fin=False)  # 200 characters, 800 bytes
    second = frame(0x0, "😀".encode() * 57)  # 228 bytes more: 1028 > 1024
    passed, violation = run(first + second)
    assert passed == first
    assert violation == Violation(1009, "a message may have at most 1024 bytes")
    # Exactly at the limit is fine.
    assert run(text("😀" * 200, fin=False) + frame(0x0, b"x" * 224))[1] is None


def test_too_many_fragments() -> None:
    four = text("a", fin=False) + frame(0x0, b"b", fin=False) * 2 + frame(0x0, b"c", fin=False)
    passed, violation = run(four + frame(0x0, b"d"))
    assert passed == four
    assert violation == Violation(1009, "a message may have at most 4 frames")


def test_binary_is_refused_unless_allowed() -> None:
    assert run(frame(0x2, b"\x00\x01")) == (
        b"",
        Violation(1003, "binary messages are not accepted"),
    )
    allowed = GuardLimits(max_message_bytes=1024, max_fragments=4, binary=True)
    assert run(frame(0x2, b"\x00\x01"), allowed) == (frame(0x2, b"\x00\x01"), None)


def test_invalid_utf8_fails_at_its_first_bad_byte() -> None:
    good = text("κόσμε", fin=False)
    bad = frame(0x0, b"\xf4\x90\x80\x80", fin=False)  # beyond U+10FFFF
    passed, violation = run(good + bad + frame(0x0, b"rest"))
    assert passed == good + bad[:6]  # its header went on; none of its payload
    assert violation == Violation(1007, "text is not valid UTF-8")


@pytest.mark.parametrize(
    "payload",
    [b"\xce", b"\xed\xa0\x80", b"\xc0\xaf", b"ok\xff"],
    ids=["truncated", "surrogate", "overlong", "invalid-byte"],
)
def test_a_text_message_must_end_valid(payload: bytes) -> None:
    passed, violation = run(text("a", fin=False) + frame(0x0, payload))
    assert violation == Violation(1007, "text is not valid UTF-8")
    assert passed.startswith(text("a", fin=False)) and len(passed) < len(
        text("a", fin=False) + frame(0x0, payload)
    )


def test_an_empty_final_fragment_ends_the_text_too() -> None:
    assert run(text("é", fin=False) + frame(0x0, b""))[1] is None
    passed, violation = run(frame(0x1, b"\xce", fin=False) + frame(0x0, b""))
    assert violation == Violation(1007, "text is not valid UTF-8")
    assert passed == frame(0x1, b"\xce", fin=False)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (text("x", rsv=1), "reserved bits set (no extension agreed)"),
        (frame(0x3, b"x"), "unknown opcode 3"),
        (frame(0xB, b""), "unknown opcode 11"),
        (text("x", masked=False), "a client's frames must be masked"),
        (frame(0x9, b"x", fin=False), "a control frame may not be fragmented"),
        (frame(0x9, b"x" * 126), "a control frame may carry 125 bytes"),
        (frame(0x0, b"x"), "a continuation with no message open"),
        (text("a", fin=False) + text("b"), "a new message before the last ended"),
        (frame(0x8, b"\x03"), "a close frame of one byte"),
        (frame(0x8, struct.pack("!H", 1005)), "close code 1005 may not be sent"),
        (frame(0x8, struct.pack("!H", 999)), "close code 999 may not be sent"),
        (frame(0x8, struct.pack("!H", 5000)), "close code 5000 may not be sent"),
        (bytes((0x81, 0xFF)) + b"\x80" + b"\x00" * 7 + MASK, "frame length has its top bit set"),
    ],
)
def test_protocol_errors_are_1002(data: bytes, reason: str) -> None:
    passed, violation = run(data)
    assert violation == Violation(1002, reason)
    assert len(passed) < len(data)


def test_a_close_reason_must_be_utf8() -> None:
    assert run(frame(0x8, struct.pack("!H", 1000) + b"\xff"))[1] == Violation(
        1007, "the close reason is not valid UTF-8"
    )


def test_a_control_frame_is_held_back_until_checked() -> None:
    guard = FrameGuard(LIMITS)
    close = frame(0x8, struct.pack("!H", 1000) + b"bye")
    assert guard.feed(close[:-1]) == b""
    assert guard.feed(close[-1:]) == close
    assert guard.feed(b"anything after a close") == b"anything after a close"


def test_after_a_violation_nothing_passes() -> None:
    guard = FrameGuard(LIMITS)
    guard.feed(frame(0x3))
    assert guard.feed(text("fine")) == b""


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=60))
def test_any_split_passes_the_same_bytes(cuts: list[int]) -> None:
    stream = (
        text("hello", fin=False)
        + frame(0x9, b"p")
        + frame(0x0, "wörld😀".encode())
        + text("x" * 300)
        + frame(0x8, struct.pack("!H", 1001))
    )
    guard = FrameGuard(LIMITS)
    out = b""
    at = 0
    for cut in cuts:
        out += guard.feed(stream[at : at + cut])
        at += cut
    out += guard.feed(stream[at:])
    assert (out, guard.violation) == (stream, None)


def test_head_scanner_finds_the_end_and_the_target() -> None:
    head = HeadScanner()
    assert head.feed(b"GET /ws/odds?token=x HTTP/1.1\r\nHost: a\r\n") is None
    assert head.feed(b"\r\n\x81\x80") == 2
    assert head.target == "/ws/odds?token=x"
    bare = HeadScanner()
    assert bare.feed(b"GET /ws/echo HTTP/1.1\nHost: a\n\nrest") == 31
    assert bare.target == "/ws/echo"
