"""runyard's secret store: encryption at rest (the only module importing ``cryptography``)
and masking of secret values in text.

Secret values (webhook headers, secret environment entries, webhook secrets, Slack incoming
webhook URLs) are sealed with Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``)
before they reach SQLite, and opened only where they are used. The key comes from
``RUNYARD_SECRET_KEY`` or, unset, from a key file beside the database (``<database>.key``,
mode 0600, created once with O_EXCL so two processes starting together agree on one key).
``RUNYARD_SECRET_KEY`` may list several keys separated by commas: the first seals, every
one opens (key rotation).

A wrong key must never turn into garbage or a half-working server: ``check_key`` compares
the key with a sealed canary stored in the database and refuses to start otherwise.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.logs import remember_secrets
from app.models import REDACTED
from app.settings import SettingsError

log = logging.getLogger("runyard.secrets")

MASK = REDACTED  # what a masked value looks like in logs: as in reads of secret maps
MIN_MASKED = 4  # shorter values would blank ordinary words out of every log line
_CANARY = b"runyard secret key check"
_GENERATE = (
    "generate one with: python -c 'from cryptography.fernet import Fernet; "
    "print(Fernet.generate_key().decode())'"
)


class SecretKeyError(SettingsError):
    """The secret key is malformed or is not the one the database's secrets were sealed
    with. The message names RUNYARD_SECRET_KEY and the key file."""


def _fernet(text: str, origin: str) -> Fernet:
    try:
        raw = base64.urlsafe_b64decode(text.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if len(raw) != 32:
        raise SecretKeyError(
            f"{origin} is not a Fernet key (32 bytes in URL-safe base64, 44 characters); "
            + _GENERATE
        )
    return Fernet(text.encode("ascii"))


class SecretBox:
    """Seals and opens values with the configured key(s)."""

    def __init__(self, keys: list[Fernet], origin: str, primary: bytes) -> None:
        self._fernet = MultiFernet(keys)
        self.origin = origin  # where the key came from, for error messages
        self._primary = primary  # the first key's text: the root of derived keys

    @classmethod
    def generate(cls) -> SecretBox:
        """A throw-away key (an in-memory database)."""
        key = Fernet.generate_key()
        return cls([Fernet(key)], "an in-memory key", key)

    def derive(self, purpose: bytes) -> bytes:
        """A 32-byte key for one purpose (say, pagination cursors), stable for as long as the
        secret key is, and useless for opening sealed secrets."""
        return hmac.new(self._primary, b"runyard derived key: " + purpose, "sha256").digest()

    def seal(self, value: str | None) -> str | None:
        if value is None:
            return None
        return self._fernet.encrypt(value.encode()).decode("ascii")

    def open(self, token: str | None) -> str | None:
        value = self._open(token)
        if value is not None:
            remember_secrets([value])
        return value

    def _open(self, token: str | None) -> str | None:
        if token is None:
            return None
        try:
            value = self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeEncodeError):
            raise SecretKeyError(
                f"A stored secret cannot be decrypted with {self.origin}: the database's "
                "secrets were sealed with another key. Set RUNYARD_SECRET_KEY to the key "
                "they were sealed with (or restore the key file)."
            ) from None
        return value

    def seal_json(self, value: Mapping[str, Any]) -> str | None:
        """A sealed JSON document, or None when there is nothing in it worth keeping."""
        if not any(value.values()):
            return None
        return self.seal(msgspec.json.encode(value).decode())

    def open_json(self, token: str | None) -> dict[str, Any]:
        text = self._open(token)
        if text is None:
            return {}
        document: dict[str, Any] = msgspec.json.decode(text)
        remember_secrets(_strings(document))
        return document

    def canary(self) -> str:
        return self._fernet.encrypt(_CANARY).decode("ascii")

    def check(self, canary: str) -> None:
        try:
            ok = self._fernet.decrypt(canary.encode("ascii")) == _CANARY
        except InvalidToken:
            ok = False
        if not ok:
            raise SecretKeyError(
                f"The database's secrets were sealed with another key than {self.origin}. "
                "Set RUNYARD_SECRET_KEY to the key they were sealed with (or restore the key "
                "file); runyard will not start with a key that cannot read them."
            )


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def key_file_for(database: str | Path) -> Path:
    path = Path(database).expanduser()
    return path.with_name(path.name + ".key")


def box_for(database: str, secret_key: str | None) -> SecretBox:
    """The box for ``database``: RUNYARD_SECRET_KEY when given, else the key file."""
    if secret_key:
        parts = [p.strip() for p in secret_key.split(",") if p.strip()]
        keys = [_fernet(p, f"RUNYARD_SECRET_KEY (key {i + 1})") for i, p in enumerate(parts)]
        if not keys:
            raise SecretKeyError("RUNYARD_SECRET_KEY is empty; " + _GENERATE)
        return SecretBox(keys, "RUNYARD_SECRET_KEY", parts[0].encode("ascii"))
    if database == ":memory:":
        return SecretBox.generate()
    path = key_file_for(database)
    text = _read_or_create_key(path)
    origin = f"the key file {path} (RUNYARD_SECRET_KEY is unset)"
    return SecretBox([_fernet(text, origin)], origin, text.encode("ascii"))


def _read_or_create_key(path: Path) -> str:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return _read_key(path)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, Fernet.generate_key() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    log.warning(
        "created a new secret key file; back it up with the database (without it the stored "
        "secrets cannot be read), or set RUNYARD_SECRET_KEY",
        extra={"key_file": str(path)},
    )
    return _read_key(path)


def _read_key(path: Path) -> str:
    # A key file another process is creating this instant may still be empty.
    for _ in range(50):
        text = path.read_text().strip()
        if text:
            break
        time.sleep(0.02)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        try:
            path.chmod(0o600)
        except OSError:
            raise SecretKeyError(
                f"The key file {path} can be read by other users (mode {mode:o}) and runyard "
                "cannot change that; make it 0600 or set RUNYARD_SECRET_KEY"
            ) from None
        log.warning("the key file was readable by others; made it 0600", extra={"path": str(path)})
    return text


# --- masking ----------------------------------------------------------------------------


def mask_values(values: Iterable[str]) -> list[str]:
    """The strings to blank out for ``values``: each value, and the words of a value with
    several (``Bearer <token>`` hides the token on its own too), longest first."""
    found: set[str] = set()
    for value in values:
        if len(value) >= MIN_MASKED:
            found.add(value)
        found.update(word for word in value.split() if len(word) >= 8)
    return sorted(found, key=len, reverse=True)


def mask(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def split_secret(previous_tail: str, text: str, secrets: Iterable[str]) -> tuple[int, int]:
    """A secret cut between two log chunks: (characters of it at the end of
    ``previous_tail``, characters of it at the start of ``text``), or (0, 0)."""
    for secret in secrets:
        for head in range(len(secret) - 1, 0, -1):
            if previous_tail.endswith(secret[:head]) and text.startswith(secret[head:]):
                return head, len(secret) - head
    return 0, 0
