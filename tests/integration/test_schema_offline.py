"""The API reference at /schema works offline: its page loads Redoc from runyard's own
/static/vendor copy (byte-identical to the file VENDORED.md records) and nothing from
another host."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from litestar.testing import TestClient

VENDOR = Path(__file__).resolve().parents[2] / "app" / "web" / "static" / "vendor"


def _recorded_sha256(name: str) -> str:
    for line in (VENDOR / "VENDORED.md").read_text().splitlines():
        if line.startswith(f"| `{name}` |"):
            return line.rstrip(" |").rsplit("`", 2)[-2]
    raise AssertionError(f"VENDORED.md records no {name}")


def test_schema_page_names_no_other_host_and_its_script_is_served(
    client: TestClient[Any],
) -> None:
    page = client.get("/schema")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    loads = re.findall(r"""<(?:script|link|img)\b[^>]*\b(?:src|href)=["']([^"']*)""", page.text)
    assert loads == ["/static/vendor/redoc.standalone.js"], loads
    head = page.text.split("<body", 1)[0]
    assert "http://" not in head and "https://" not in head and "//" not in "".join(loads)
    assert "Redoc.init(" in page.text
    # The bundle itself names a logo on Redocly's CDN: the policy keeps the browser from it.
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "img-src 'self' data:;" in policy, policy

    script = client.get("/static/vendor/redoc.standalone.js")
    assert script.status_code == 200, script.status_code
    assert "javascript" in script.headers["content-type"]
    served = hashlib.sha256(script.content).hexdigest()
    assert served == _recorded_sha256("redoc.standalone.js")
    assert served == hashlib.sha256((VENDOR / "redoc.standalone.js").read_bytes()).hexdigest()


def test_the_schema_documents_stay_where_they_were(client: TestClient[Any]) -> None:
    document = client.get("/schema/openapi.json")
    assert document.status_code == 200 and document.json()["info"]["title"] == "runyard"
    assert client.get("/schema/openapi.yaml").status_code == 200


def test_vendored_files_match_their_records() -> None:
    for name in ("redoc.standalone.js", "htmx.min.js"):
        digest = hashlib.sha256((VENDOR / name).read_bytes()).hexdigest()
        assert digest == _recorded_sha256(name), name
