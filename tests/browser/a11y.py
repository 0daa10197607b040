"""Accessibility checks with axe-core (vendored beside this file, VENDORED.md), injected into
the page under test with Selenium and run there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selenium.webdriver.remote.webdriver import WebDriver

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
BLOCKING = {"serious", "critical"}

_RUN = """
const done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ['violations']})
  .then(results => done({ok: true, violations: results.violations.map(v => ({
      id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ': ' + n.failureSummary)
  }))}))
  .catch(error => done({ok: false, error: String(error)}));
"""


def violations(driver: WebDriver) -> list[dict[str, Any]]:
    """axe's violations on the page as loaded now."""
    driver.execute_script(AXE.read_text(encoding="utf-8"))
    result: dict[str, Any] = driver.execute_async_script(_RUN)
    if not result.get("ok"):
        raise AssertionError(f"axe-core did not run: {result.get('error')}")
    found: list[dict[str, Any]] = result["violations"]
    return found


def assert_accessible(driver: WebDriver) -> None:
    """No violation of impact serious or critical; the message lists each with its nodes."""
    blocking = [v for v in violations(driver) if v.get("impact") in BLOCKING]
    if blocking:
        lines = [
            f"{len(blocking)} serious or critical accessibility violations on {driver.current_url}:"
        ]
        for v in blocking:
            lines.append(f"- {v['id']} ({v['impact']}): {v['help']}")
            lines += [f"    {node}" for node in v["nodes"]]
        raise AssertionError("\n".join(lines))
