"""`skymesh dashboard` on a running local mesh, in a real headless browser: Debian's
chromium (/usr/bin/chromium) driven by playwright, with a viewer's certificate. The page
loads with no console errors, shows every region, shows the path between two picked regions
as the controller has it, and shows a region's links down within 2 s of `skymesh mesh kill`.

SKYMESH_DASHBOARD_SCREENSHOT=PATH saves the page as it is at the end."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import ROOT, cli_json, run_cli

CHROMIUM = os.environ.get("SKYMESH_CHROMIUM", "/usr/bin/chromium")
REGIONS = ["frankfurt", "london", "new-york", "tokyo"]

playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no browser at {CHROMIUM} (apt-get install chromium)",
                allow_module_level=True)


def dashboard_command() -> list[str]:
    return [sys.executable, "-m", "skymesh", "dashboard"]


def first_line(proc: subprocess.Popen, timeout: float) -> str:
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        pytest.fail(f"the dashboard printed nothing in {timeout} s")
    line = proc.stdout.readline()
    assert line, f"the dashboard exited: {proc.wait(5)}, {proc.stderr.read()}"
    return line


@pytest.fixture
def dashboard(start_mesh, home):
    start_mesh("--only", ",".join(REGIONS))
    viewer = cli_json("certs", "admin", "dash", "--role", "viewer")
    cert = home / "certs" / "admin-dash.pem"
    assert cert.is_file(), viewer
    proc = subprocess.Popen([*dashboard_command(), "--listen", "127.0.0.1:0", "--json",
                             "--cert", str(cert)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        yield json.loads(first_line(proc, 30))["url"]
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_live_map_in_a_browser(dashboard, home):
    from skymesh.cli import dashboard as dash_module

    url = dashboard
    assert url.startswith("http://127.0.0.1:")
    assert dash_module.running_url() == url  # for `skymesh up` and `admin status`
    problems: list[str] = []
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(
                f"request failed: {r.url}") if not r.url.endswith("/events") else None)
            page.goto(url)
            page.wait_for_selector("body[data-ready=true]", timeout=15_000)
            # every region of the mesh, with its relay, from the world outline shipped
            assert page.locator("#land path").count() == 1
            for rid in REGIONS:
                page.wait_for_selector(f'g.region.connected[data-region="{rid}"]',
                                       timeout=10_000)
            assert page.locator("g.region").count() == len(REGIONS)
            assert page.locator("#links line.link").count() >= len(REGIONS) * 3 // 2
            page.wait_for_selector("#live:not(.off)", timeout=10_000)

            # two regions picked: the controller's path, drawn, with its cost and backup
            expected = cli_json("admin", "path", "london", "tokyo")
            page.select_option("#src", "london")
            page.select_option("#dst", "tokyo")
            page.wait_for_selector("#path-info[data-path]:not([data-path=''])",
                                   timeout=10_000)
            shown = page.get_attribute("#path-info", "data-path").split(",")
            assert shown[0] == "london" and shown[-1] == "tokyo"
            assert shown == expected["path"] or \
                cli_json("admin", "path", "london", "tokyo")["path"] == shown  # rerouted
            assert page.locator("#route line.route").count() >= len(shown) - 1
            info = page.inner_text("#path-info")
            assert "ms" in info and "backup" in info
            # a region clicked on the map picks it too
            page.click('g.region[data-region="frankfurt"] circle:not(.halo)', force=True)
            assert page.input_value("#src") == "frankfurt"

            # a region taken away: its links down within 2 s
            out = run_cli("mesh", "kill", "new-york")
            assert out.returncode == 0, out.stderr
            killed = time.monotonic()
            page.wait_for_selector('#links line.link.down[data-link*="new-york"]',
                                   timeout=2_000)
            took = time.monotonic() - killed
            page.wait_for_selector('g.region.unreachable[data-region="new-york"]',
                                   timeout=2_000)
            # the feed and the drill's timeline follow
            page.wait_for_selector('#events li[data-kind="relay-disconnected"]',
                                   timeout=5_000)
            page.wait_for_selector("#drill-panel:not([hidden])", timeout=5_000)
            page.wait_for_selector('#events li[data-kind="link-down"]', timeout=10_000)
            assert "new-york" in page.inner_text("#drill-phase")
            shot = os.environ.get("SKYMESH_DASHBOARD_SCREENSHOT")
            if shot:
                page.screenshot(path=shot)
        finally:
            browser.close()
    assert not problems, problems
    assert took < 2.0
