"""Pagination cursors are opaque, bound to one org and one server key, and refused with a
400 problem when altered."""

from __future__ import annotations

import base64

import pytest

from app.services.cursors import CursorCodec, InvalidCursor

KEY = b"k" * 32


def test_round_trip_and_opacity() -> None:
    codec = CursorCodec(KEY)
    first, second = codec.encode("org_a", 1234), codec.encode("org_a", 1234)
    assert codec.decode("org_a", first) == codec.decode("org_a", second) == 1234
    # A fresh nonce each time: two cursors for one position look unrelated, and neither
    # shows the position (a sequence shared by every org).
    assert first != second
    for cursor in (first, second):
        assert "1234" not in cursor and not cursor.isdigit()
        assert (1234).to_bytes(8, "big") not in base64.urlsafe_b64decode(cursor)


def test_a_key_survives_a_new_codec_but_not_a_new_key() -> None:
    cursor = CursorCodec(KEY).encode("org_a", 7)
    assert CursorCodec(KEY).decode("org_a", cursor) == 7
    with pytest.raises(InvalidCursor):
        CursorCodec(b"x" * 32).decode("org_a", cursor)


def test_another_orgs_cursor_is_refused() -> None:
    codec = CursorCodec(KEY)
    with pytest.raises(InvalidCursor) as refused:
        codec.decode("org_b", codec.encode("org_a", 7))
    assert refused.value.status == 400 and refused.value.errors[0].field == "cursor"


def test_every_single_bit_flip_is_refused() -> None:
    codec = CursorCodec(KEY)
    raw = base64.urlsafe_b64decode(codec.encode("org_a", 99))
    for index in range(len(raw)):
        for bit in range(8):
            flipped = bytearray(raw)
            flipped[index] ^= 1 << bit
            with pytest.raises(InvalidCursor):
                codec.decode("org_a", base64.urlsafe_b64encode(bytes(flipped)).decode())


@pytest.mark.parametrize(
    "text",
    [
        "99999999999999999999999",
        "12",
        "",
        "zzz",
        "é" * 44,
        "=" * 44,
        "A" * 44,
        "A" * 10_000,
        "!" * 44,
    ],
)
def test_garbage_is_refused(text: str) -> None:
    with pytest.raises(InvalidCursor):
        CursorCodec(KEY).decode("org_a", text)


@pytest.mark.parametrize("position", [0, 1, 2**63 - 1])
def test_positions_at_the_edges(position: int) -> None:
    codec = CursorCodec(KEY)
    assert codec.decode("org_a", codec.encode("org_a", position)) == position


def test_out_of_range_positions_are_a_programming_error() -> None:
    with pytest.raises(ValueError):
        CursorCodec(KEY).encode("org_a", 2**63)
    with pytest.raises(ValueError):
        CursorCodec(KEY).encode("org_a", -1)
