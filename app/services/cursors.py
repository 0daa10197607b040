"""Opaque pagination cursors.

A page of runs ends at a position in the ``runs`` table's sequence, which every organization
shares: handed out as a number, consecutive cursors would tell one org how many runs all the
others started in between. So the position travels encrypted and authenticated, bound to the
org it was issued to:

    base64url( version | nonce (8 bytes) | position XOR PRF(nonce) (8) | tag (16) )

with HMAC-SHA256 as the pseudo-random function (counter-mode encryption, then a MAC over the
version, nonce, ciphertext and org id). A random nonce makes two cursors for the same position
look unrelated. A cursor that was altered, cut, issued to another org or under another key is
refused with a 400 that says to start again from the first page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from app.errors import BadRequest, FieldError

_VERSION = b"\x01"
_NONCE = 8
_BODY = 8
_TAG = 16
_RAW_LENGTH = len(_VERSION) + _NONCE + _BODY + _TAG
_TEXT_LENGTH = 44  # base64url of 33 bytes, no padding needed
_MAX_POSITION = 2**63 - 1  # SQLite INTEGER


class InvalidCursor(BadRequest):
    title = "Invalid cursor"
    slug = "invalid-cursor"


def _invalid() -> InvalidCursor:
    message = (
        "not a cursor this server issued to your organization (altered, cut, or from "
        "before a key change); use the next_cursor value of the previous page, or leave "
        "cursor out to start from the first page"
    )
    return InvalidCursor(f"cursor: {message}", [FieldError("cursor", message)])


class CursorCodec:
    """Encodes positions for one server key. Without a key, a random one is made: cursors
    then stop working when the process restarts (clients start again from page one)."""

    def __init__(self, key: bytes | None = None) -> None:
        root = key if key else secrets.token_bytes(32)
        self._encrypt_key = hmac.digest(root, b"runyard cursor encryption", hashlib.sha256)
        self._mac_key = hmac.digest(root, b"runyard cursor authentication", hashlib.sha256)

    def _pad(self, nonce: bytes) -> bytes:
        return hmac.digest(self._encrypt_key, nonce, hashlib.sha256)[:_BODY]

    def _tag(self, head: bytes, org_id: str) -> bytes:
        message = head + org_id.encode()
        return hmac.digest(self._mac_key, message, hashlib.sha256)[:_TAG]

    def encode(self, org_id: str, position: int) -> str:
        if not 0 <= position <= _MAX_POSITION:
            raise ValueError(f"position {position} is out of range")
        nonce = secrets.token_bytes(_NONCE)
        body = bytes(
            a ^ b for a, b in zip(position.to_bytes(_BODY, "big"), self._pad(nonce), strict=True)
        )
        head = _VERSION + nonce + body
        return base64.urlsafe_b64encode(head + self._tag(head, org_id)).decode("ascii")

    def decode(self, org_id: str, text: str) -> int:
        """The position, or InvalidCursor (400)."""
        if len(text) != _TEXT_LENGTH or not text.isascii():
            raise _invalid()
        try:
            raw = base64.urlsafe_b64decode(text.encode("ascii"))
        except (binascii.Error, ValueError):
            raise _invalid() from None
        if len(raw) != _RAW_LENGTH or raw[:1] != _VERSION:
            raise _invalid()
        head, tag = raw[:-_TAG], raw[-_TAG:]
        if not hmac.compare_digest(tag, self._tag(head, org_id)):
            raise _invalid()
        nonce, body = head[1 : 1 + _NONCE], head[1 + _NONCE :]
        plain = bytes(a ^ b for a, b in zip(body, self._pad(nonce), strict=True))
        position = int.from_bytes(plain, "big")
        if position > _MAX_POSITION:
            raise _invalid()
        return position
