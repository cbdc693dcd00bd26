"""Take docs/dashboard.png: a local mesh of 12 regions, `skymesh dashboard` on it, a path
picked, and the page in Debian's headless chromium (playwright with the system browser):

    .venv/bin/python tools/dashboard_screenshot.py [--out docs/dashboard.png]

It starts its mesh in a private SKYMESH_HOME and stops it at the end; with --drill it also
blackholes a region for a few seconds first, so that the picture shows a drill's timeline
and the links of a region taken away."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REGIONS = ("london,frankfurt,new-york,chicago,sao-paulo,lagos,johannesburg,mumbai,"
           "singapore,tokyo,sydney,los-angeles")
CHROMIUM = os.environ.get("SKYMESH_CHROMIUM", "/usr/bin/chromium")


def skymesh(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skymesh", *args], cwd=ROOT, text=True,
                          capture_output=True, **kw)


def dashboard_command() -> list[str]:
    return [sys.executable, "-m", "skymesh", "dashboard"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    p.add_argument("--only", default=REGIONS, help="regions of the mesh (default: 12)")
    p.add_argument("--src", default="sao-paulo")
    p.add_argument("--dst", default="tokyo")
    p.add_argument("--drill", metavar="REGION", default="frankfurt",
                   help="blackhole this region for a while first ('' for none)")
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    home = tempfile.mkdtemp(prefix="skymesh-shot-")
    os.environ["SKYMESH_HOME"] = home
    up = skymesh("up", "--detach", "--json", "--only", args.only, timeout=240)
    if up.returncode:
        print(up.stderr, file=sys.stderr)
        return 1
    dash = subprocess.Popen([*dashboard_command(), "--listen", "127.0.0.1:0", "--json"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = json.loads(dash.stdout.readline())["url"]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page(viewport={"width": 1500, "height": 820},
                                    device_scale_factor=1)
            page.goto(url)
            page.wait_for_selector("body[data-ready=true]")
            if args.drill:
                drill = subprocess.Popen([sys.executable, "-m", "skymesh", "drill",
                                          "remove-region", args.drill, "--mode", "blackhole",
                                          "--duration", "6s", "--force"], cwd=ROOT,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         text=True)
                try:
                    page.wait_for_selector("#drill-panel[data-phase]", timeout=120_000)
                except Exception:
                    drill.kill()
                    print(drill.communicate()[1], file=sys.stderr)
                    raise
                page.wait_for_selector("line.link.down", timeout=30_000)
                time.sleep(1.0)  # a few more events in the feed
            page.select_option("#src", args.src)
            page.select_option("#dst", args.dst)
            page.wait_for_selector("#path-backup", timeout=10_000)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out))
            print(f"wrote {args.out}")
            browser.close()
            if args.drill:
                drill.wait(timeout=180)
    finally:
        dash.terminate()
        dash.wait(timeout=10)
        skymesh("down", timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
