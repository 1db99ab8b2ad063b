"""Dashboard speed on a large study: every callback at the server, and the first page in a browser.

A generated store of 10,000 search trials over 5 LODO folds (26 classes, class metrics,
importances, record views). Each callback is posted to the app's own endpoint through
Flask's test client (so JSON encoding counts), first cold, then warm (p50/p95 over
repeats). The first page is timed in headless Chromium from navigation until the Studies
view's figures are drawn, on a fresh browser profile. Targets: p95 <= 300 ms per callback,
first page <= 2 s.

    python -m benchmarks dashboard [--trials 10000] [--folds 5] [--repeats 15] [--no-browser]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from heartbeatai.dashboard.app import create_app
from heartbeatai.results import ResultsStore
from heartbeatai.results.synthetic_store import make_store

CALLBACK_TARGET_S = 0.300
PAGE_TARGET_S = 2.0
CHROMIUM = "/usr/bin/chromium"


def _values(root: str) -> dict[str, object]:
    """A realistic value for every input and state of the page, from the generated study."""
    store = ResultsStore(root)
    views = store.read("demo", "record_views", filters={"fold_id": "lodo:cpsc"}).sort_values("rank")
    first = views.iloc[0]
    return {
        "refresh.n_intervals": 1, "study.value": "demo", "signature.data": store.signature("demo"),
        "view.active_tab": "degradation", "protocol.value": "lodo", "arms.value": None, "seed.value": "all",
        "metric.value": "auroc", "label-set.value": "noisy", "decomposition-class.value": "AF",
        "decomposition-domain.value": "cpsc", "sweep-fold.value": "lodo:cpsc", "record-fold.value": "lodo:cpsc",
        "record.value": f"{first.record_id}|{first['class']}", "attribution-overlay.value": True,
        "export-fold.value": "consensus|val", "export-button.n_clicks": 1,
        "degradation-heatmap.clickData": {"points": [{"x": "cpsc", "y": "AF"}]},
    }


def _payload(output: str, spec: dict, values: dict) -> dict:
    def filled(items):
        return [{**item, "value": values[f"{item['id']}.{item['property']}"]} for item in items]

    outputs = [dict(zip(("id", "property"), o.rsplit(".", 1))) for o in output.strip(".").split("...")]
    return {"output": output, "outputs": outputs if len(outputs) > 1 else outputs[0],
            "inputs": filled(spec["inputs"]), "state": filled(spec["state"]),
            "changedPropIds": [f"{spec['inputs'][0]['id']}.{spec['inputs'][0]['property']}"]}


def time_callbacks(root: str, repeats: int) -> list[tuple[str, float, float, float]]:
    app = create_app(root, warm=False)  # cold means cold: no figure built ahead
    client = app.server.test_client()
    values = _values(root)
    rows = []
    for output, spec in app.callback_map.items():
        payload = _payload(output, spec, values)
        timings = []
        for _ in range(repeats + 1):
            started = time.perf_counter()
            response = client.post("/_dash-update-component", json=payload)
            timings.append(time.perf_counter() - started)
            if response.status_code not in (200, 204):
                raise RuntimeError(f"{output}: HTTP {response.status_code}")
            if b"view-error" in response.data:
                raise RuntimeError(f"{output}: the view answered with an error: {response.data[:300]!r}")
        warm = np.array(timings[1:])
        rows.append((output.strip(".").split(".")[0], timings[0], float(np.percentile(warm, 50)),
                     float(np.percentile(warm, 95))))
    return rows


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def time_first_page(root: str, settle_s: float) -> list[tuple[str, float]]:
    from playwright.sync_api import sync_playwright

    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys; from heartbeatai.cli import main; sys.exit(main(sys.argv[1:]))",
         "dashboard", "--results", root, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = []
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "_dash-layout", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            for label, pause in (("just after start", 0.0), (f"after {settle_s:.0f} s (sweeps warmed)", settle_s)):
                time.sleep(pause)
                context = browser.new_context(viewport={"width": 1400, "height": 1000})  # empty cache each time
                page = context.new_page()
                started = time.perf_counter()
                page.goto(url)
                page.wait_for_function("""() => ['progress-graph', 'card-graph'].every(id => {
                    const g = document.querySelector(`#${id} .js-plotly-plot`);
                    return g && g._fullData && g._fullData.length; }) && document.querySelector('#studies-list')""",
                                       timeout=120_000)
                results.append((label, time.perf_counter() - started))
                context.close()
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--settle", type=float, default=20.0, help="seconds to let the server warm before the 2nd page")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--store", help="reuse (or create) the store here instead of a temporary folder")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as scratch:
        root = args.store or scratch
        if not (Path(root) / "demo").exists():
            started = time.perf_counter()
            make_store(root, n_folds=args.folds, n_trials=args.trials, classes=26, seeds=2)
            print(f"store: {args.trials} trials over {args.folds} folds, 26 classes, written in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)

        rows = time_callbacks(root, args.repeats)
        print(f"\n{'callback (first output)':28s} {'cold ms':>8s} {'p50 ms':>8s} {'p95 ms':>8s}")
        for name, cold, p50, p95 in rows:
            print(f"{name:28s} {cold * 1e3:8.0f} {p50 * 1e3:8.0f} {p95 * 1e3:8.0f}")
        worst = max(rows, key=lambda r: r[3])
        failing = [r[0] for r in rows if r[3] > CALLBACK_TARGET_S]
        print(f"worst warm p95: {worst[3] * 1e3:.0f} ms ({worst[0]}); target {CALLBACK_TARGET_S * 1e3:.0f} ms: "
              + ("met" if not failing else f"missed by {', '.join(failing)}"))
        worst_cold = max(rows, key=lambda r: r[1])
        print(f"worst cold (first call, nothing cached): {worst_cold[1] * 1e3:.0f} ms ({worst_cold[0]})")

        if not args.no_browser:
            if not Path(CHROMIUM).exists():
                print("browser: skipped (no /usr/bin/chromium)")
            else:
                print()
                for label, seconds in time_first_page(root, args.settle):
                    verdict = "met" if seconds <= PAGE_TARGET_S else "missed"
                    print(f"first page complete in the browser, {label}: {seconds:.2f} s "
                          f"(target {PAGE_TARGET_S:.0f} s: {verdict})")
        print(json.dumps({"callbacks": {n: {"cold_ms": c * 1e3, "p50_ms": a * 1e3, "p95_ms": b * 1e3}
                                        for n, c, a, b in rows}}), file=sys.stderr)
    return 0
