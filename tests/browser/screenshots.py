"""The README's pictures of the web UI, taken from real runs: a live runyard with the example
dbt project (its ``dbt build`` fails at ``broken_orders``), the same project's build without
the broken models, and the slow project's run, seen by an admin in headless chromium.

    python -m tests.browser.screenshots [--out docs/images]

Writes ``ui-overview.png`` (the overview) and ``ui-run.png`` (the failed run's page).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.browser.world import browser_missing, make_driver, sign_in, wait_until, world

OUT = Path(__file__).resolve().parents[2] / "docs" / "images"
SIZE_LIMIT = 200 * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    reason = browser_missing()
    if reason:
        print(reason, file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    with world() as ui, tempfile.TemporaryDirectory() as profile:
        failed = ui.failed_build()
        healthy = ui.job(ui.project_id, "staging", "dbt build --exclude tag:broken")
        # A few runs each, so the overview's run charts have something to show.
        for _ in range(3):
            assert ui.wait(ui.trigger(ui.project_id, healthy))["status"] == "success"
        for _ in range(2):
            assert ui.wait(ui.trigger(ui.slow_project_id, ui.slow_job_id))["status"] == "success"
        for project in (ui.project_id, ui.slow_project_id):  # scheduled: the next runs show
            deployed = ui.api.post(f"/api/v1/projects/{project}/deploy")
            assert deployed.status_code in (200, 201), deployed.text
        driver = make_driver(Path(profile), width=1280, height=860)
        try:
            sign_in(driver, ui.url, ui.admin_token)
            # The page's own height (the run page's first 1,150 pixels: its summary, failed
            # nodes and the start of what follows), so the pictures have no empty band.
            shots = {"ui-overview.png": ("/ui/", 1500), "ui-run.png": (f"/ui/runs/{failed}", 1150)}
            for name, (path, tallest) in shots.items():
                driver.get(ui.url + path)
                wait_until(
                    driver,
                    lambda: driver.execute_script("return document.readyState === 'complete'"),
                    path,
                )
                height = driver.execute_script(
                    "return Math.ceil(Math.max(...Array.from(document.body.children,"
                    " e => e.getBoundingClientRect().bottom + window.scrollY)) + 16)"
                )
                driver.execute_cdp_cmd(
                    "Emulation.setDeviceMetricsOverride",
                    {
                        "width": 1280,
                        "height": min(int(height), tallest),
                        "deviceScaleFactor": 1,
                        "mobile": False,
                    },
                )
                target = args.out / name
                driver.save_screenshot(str(target))
                size = target.stat().st_size
                print(f"{target} ({size:,} bytes)")
                if size > SIZE_LIMIT:
                    print(f"{target} is over {SIZE_LIMIT:,} bytes", file=sys.stderr)
                    return 1
        finally:
            driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
