"""The receiver snippet in docs/notifications.md works on what runyard sends."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from app.notify.messages import signature
from app.notify.webhook import request_headers

DOC = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"


def _receiver() -> dict[str, Any]:
    [code] = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - our own documentation
    namespace["SECRET"] = b"0123456789abcdef-secret"
    return namespace


def test_documented_receiver_accepts_once_and_rejects_forgeries_and_replays() -> None:
    receiver = _receiver()
    accept = receiver["accept"]
    body = b'{"event": "failure", "delivery_id": "ntf_1"}'

    def headers(at: int, delivery: str = "ntf_1", key: str = "0123456789abcdef-secret") -> Any:
        return request_headers(
            {}, event="failure", delivery_id=delivery, signature_value=signature(key, at, body)
        )

    now = int(time.time())
    assert accept(headers(now), body)
    assert not accept(headers(now), body)  # the same delivery again: a duplicate
    assert not accept(headers(now, "ntf_2"), body + b" ")  # body changed after signing
    assert not accept(headers(now, "ntf_3", key="another-secret-xx"), body)
    assert not accept(headers(now - 600, "ntf_4"), body)  # a replay of an old request
    assert not accept({"X-Runyard-Delivery": "ntf_5"}, body)  # unsigned
    assert accept(headers(now, "ntf_6"), body)
