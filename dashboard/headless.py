"""Drive the dashboard headless: serve a results root in a child process, open it in Chromium.

Shared by the browser tests, the benchmark and the README's screenshot:

    python -m heartbeatai.dashboard.headless --results runs --view degradation --out docs/dashboard-degradation.png

Chromium is Debian's (/usr/bin/chromium, installed by .ci/run), driven by playwright's
Python package, so nothing is downloaded. The server binds 127.0.0.1 on a free port and is
stopped by its process id.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
_SERVE = "import sys; from heartbeatai.cli import main; sys.exit(main(sys.argv[1:]))"
# The graphs each view draws first: a view is "complete" when plotly has drawn all of them.
VIEW_GRAPHS = {
    "Studies": ("progress-graph", "card-graph"),
    "Degradation": ("degradation-heatmap", "degradation-scatter"),
    "Ablations": ("ablation-graph", "rare-effects-graph"),
    "Sweeps": ("parallel-graph", "curves-graph"),
    "Records": ("ecg-graph",),
    "Export": (),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(results_root: str | os.PathLike, log_path: str | os.PathLike | None = None,
            timeout_s: float = 90.0, args: tuple[str, ...] = ()) -> Iterator[str]:
    """`heartbeatai dashboard` on 127.0.0.1 in a child process; yields its URL, then stops it.
    `args`: more command-line arguments (`--token T`: then readiness is a 401 from the page)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    server = subprocess.Popen([sys.executable, "-c", _SERVE, "dashboard", "--results", str(results_root),
                               "--port", str(port), *args], stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        _wait_until_serving(url, server, timeout_s)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if log_path:
            log.close()


def _wait_until_serving(url: str, server: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the dashboard exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(url + "_dash-layout", timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as err:
            if err.code == 401:  # serving, and asking for its token
                return
            time.sleep(0.3)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    raise TimeoutError(f"the dashboard was not serving at {url} after {timeout_s:.0f} s")


def launch_chromium(playwright):
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def wait_for_graphs(page, graph_ids, timeout_ms: float = 60_000) -> None:
    """Until plotly has drawn data into every one of the graphs."""
    page.wait_for_function(
        """ids => ids.every(id => { const g = document.querySelector(`#${id} .js-plotly-plot`);
                                    return g && g._fullData && g._fullData.length; })""",
        arg=list(graph_ids), timeout=timeout_ms)


def screenshot(results_root: str, view: str, out: str, study: str | None = None) -> None:
    from playwright.sync_api import sync_playwright

    with serving(results_root) as url, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        wait_for_graphs(page, VIEW_GRAPHS["Studies"])
        if study:
            page.click("#study")
            page.locator(".dash-dropdown-option", has_text=study).first.click()
        page.get_by_role("tab", name=view).click()
        wait_for_graphs(page, VIEW_GRAPHS[view])
        if view == "Degradation":  # decompose the rarest class's drop on the first held-out domain
            box = page.locator("#degradation-heatmap .nsewdrag").first.bounding_box()
            rows = page.evaluate("() => document.querySelector('#degradation-heatmap .js-plotly-plot')._fullData[0].y.length")
            page.mouse.click(box["x"] + 5, box["y"] + box["height"] / (2 * rows))
            page.wait_for_function("""() => document.querySelector('#decomposition-graph .js-plotly-plot')
                                      ?._fullData?.[0]?.type === 'bar'""")
            page.mouse.move(0, 0)  # no hover label over the heatmap in the picture
        time.sleep(0.5)  # let plotly finish its transitions before the picture
        page.screenshot(path=out, full_page=True)
        browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m heartbeatai.dashboard.headless",
                                     description="Save a screenshot of one dashboard view.")
    parser.add_argument("--results", required=True, help="results storage root")
    parser.add_argument("--view", default="Degradation", type=str.title, choices=list(VIEW_GRAPHS))
    parser.add_argument("--study", help="study to show (default: the first)")
    parser.add_argument("--out", required=True, help="PNG file to write")
    args = parser.parse_args(argv)
    screenshot(args.results, args.view, args.out, args.study)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
