"""Dashboard speed on a large study: every callback at the server, and the first page in a browser.

A generated store of 10,000 search trials over 5 LODO folds (26 classes, class metrics,
importances, record views). Each callback is posted to the app's own endpoint through
Flask's test client (so JSON encoding counts), first cold, then warm (p50/p95 over
repeats). The first page is timed in headless Chromium from navigation until the Studies
view's figures are drawn, on a fresh browser profile. Targets: p95 <= 300 ms per callback,
first page <= 2 s. As a reference measured in the same run, a bare Dash app with one
graph (a 26 x 5 heatmap) is timed the same way: the floor Dash and plotly.js set here.

    python -m benchmarks dashboard [--trials 10000] [--folds 5] [--repeats 15] [--no-browser]

A second case times a root of many studies (issue 12: 3,000 studies took 383 s; issue 20:
1,200 studies took 110 s to network idle in Chromium):

    python -m benchmarks dashboard --studies 3000 [--no-browser] [--page-repeats 3] [--rebuild-share 30]

It writes that many small studies (hard-linked copies of one, each with the summary file a
study writes when its stages end), then times, on a freshly started app, the first Studies
view's data at the server (the page's layout and each callback the view fires, with its
response size), the same callbacks again, the first view of an older store without
summaries (`--rebuild-share` studies), and in Chromium the time to network idle and to the
view complete (median of `--page-repeats`, an empty cache each). Targets: first view's data
<= 2 s at the server, network idle <= 3 s in Chromium. The references, measured in the same
run: a bare Dash callback, reading one study's tables the old way (scaled to the root: what
the list cost before the summaries), and a bare Dash page in the browser, timed between the
dashboard's pages.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dash
import numpy as np
import plotly.graph_objects as go
from dash import Input, Output, dcc, html
from werkzeug.serving import make_server

from heartbeatai.dashboard import headless
from heartbeatai.dashboard.app import create_app
from heartbeatai.results import ResultsStore
from heartbeatai.testing.fake_store import make_many_studies, make_store

CALLBACK_TARGET_S = 0.300
PAGE_TARGET_S = 2.0
STUDIES_VIEW_TARGET_S = 2.0
PAGE_STUDIES_TARGET_S = 3.0  # issue 20: a root of 3,000 studies opens its first view in Chromium
# One small study, copied: the list's cost is per study, not per trial.
_STUDY = dict(n_folds=2, n_trials=20, classes=6, seeds=1, records_per_fold=6, record_views_per_fold=1)


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
        "export-fold.value": "consensus|val", "export-button.n_clicks": 1, "study.search_value": None,
        "studies-list.page_current": 0, "studies-filter.value": None,
        "degradation-heatmap.clickData": {"points": [{"x": "cpsc", "y": "AF"}]},
    }


def _payload(output: str, spec: dict, values: dict) -> dict:
    def filled(items):
        return [{**item, "value": values[f"{item['id']}.{item['property']}"]} for item in items]

    outputs = [dict(zip(("id", "property"), o.rsplit(".", 1))) for o in output.strip(".").split("...")]
    return {"output": output, "outputs": outputs if len(outputs) > 1 else outputs[0],
            "inputs": filled(spec["inputs"]), "state": filled(spec["state"]),
            "changedPropIds": [f"{spec['inputs'][0]['id']}.{spec['inputs'][0]['property']}"]}


def reference_app() -> dash.Dash:
    """The floor: one input, one graph, one callback drawing a small heatmap."""
    app = dash.Dash(__name__, serve_locally=True)
    app.layout = html.Div([dcc.Input(id="seed", value="0"), dcc.Graph(id="graph")])

    @app.callback(Output("graph", "figure"), Input("seed", "value"))
    def draw(seed):
        z = np.random.default_rng(int(seed or 0)).normal(size=(26, 5))
        return go.Figure(go.Heatmap(z=z, x=list("abcde"), y=[f"c{i}" for i in range(26)]))

    return app


def time_reference_callback(repeats: int) -> tuple[float, float]:
    client = reference_app().server.test_client()
    payload = {"output": "graph.figure", "outputs": {"id": "graph", "property": "figure"},
               "inputs": [{"id": "seed", "property": "value", "value": "1"}], "changedPropIds": ["seed.value"]}
    timings = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        client.post("/_dash-update-component", json=payload)
        timings.append(time.perf_counter() - started)
    return tuple(np.percentile(timings[1:], [50, 95]))


@contextlib.contextmanager
def _serving_in_thread(app: dash.Dash) -> Iterator[str]:
    server = make_server("127.0.0.1", headless.free_port(), app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        thread.join()


def _first_page(browser, url: str, graphs, selector: str | None = None) -> float:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})  # empty cache each time
    page = context.new_page()
    started = time.perf_counter()
    page.goto(url)
    headless.wait_for_graphs(page, graphs, timeout_ms=120_000)
    if selector:
        page.wait_for_selector(selector)
    elapsed = time.perf_counter() - started
    context.close()
    return elapsed


def time_callbacks(root: str, repeats: int) -> list[tuple[str, float, float, float, float, float]]:
    """Per callback: the first call (nothing cached, imports included), then p50/p95 with the
    views' cache dropped before each call (a filter change on tables already read), then
    p50/p95 answered from the views' cache (a refresh that found nothing new)."""
    app = create_app(root, warm=False)  # cold means cold: no figure built ahead
    views = app.server.extensions["heartbeatai_views"]
    client = app.server.test_client()
    values = _values(root)

    def post(payload: dict, output: str) -> float:
        started = time.perf_counter()
        response = client.post("/_dash-update-component", json=payload)
        elapsed = time.perf_counter() - started
        if response.status_code not in (200, 204):
            raise RuntimeError(f"{output}: HTTP {response.status_code}")
        if b"view-error" in response.data:
            raise RuntimeError(f"{output}: the view answered with an error: {response.data[:300]!r}")
        return elapsed

    rows = []
    for output, spec in app.callback_map.items():
        payload = _payload(output, spec, values)
        cold = post(payload, output)
        uncached = []
        for _ in range(repeats):
            views.forget()
            uncached.append(post(payload, output))
        cached = [post(payload, output) for _ in range(repeats)]
        rows.append((output.strip(".").split(".")[0], cold, *np.percentile(uncached, [50, 95]),
                     *np.percentile(cached, [50, 95])))
    return rows


def time_first_page(root: str, settle_s: float) -> list[tuple[str, float]]:
    """Navigation to the Studies view's figures drawn, on an empty browser cache each time."""
    from playwright.sync_api import sync_playwright

    results = []
    with sync_playwright() as playwright:
        browser = headless.launch_chromium(playwright)
        with _serving_in_thread(reference_app()) as url:
            _first_page(browser, url, ["graph"])  # Chromium's own first start is not the page's cost
            results.append(("reference: bare Dash app, one graph", _first_page(browser, url, ["graph"])))
        with headless.serving(root) as url:
            results.append(("dashboard, just after start", _first_page(
                browser, url, headless.VIEW_GRAPHS["Studies"], "#studies-list")))
            time.sleep(settle_s)
            results.append((f"dashboard, {settle_s:.0f} s later (sweeps built)", _first_page(
                browser, url, headless.VIEW_GRAPHS["Studies"], "#studies-list")))
        browser.close()
    return results


def first_view_requests(app: dash.Dash, study: str, signature: str) -> list[tuple[str, dict]]:
    """The callbacks the first Studies view fires, as the page sends them: the filters' options,
    the chosen study's view and the first page of the studies list (the layout holds the rest)."""
    values = {"study.value": study, "signature.data": signature, "studies-list.page_current": 0,
              "studies-filter.value": None}
    wanted = ("arms.options", "studies-status.children", "studies-list.data")
    requests = []
    for name in wanted:
        output = next(o for o in app.callback_map if name in o)
        requests.append((name.split(".")[0], _payload(output, app.callback_map[output], values)))
    return requests


def time_studies_view(root: str, study: str) -> tuple[list[tuple[str, float, int]], float]:
    """On a freshly created app: (name, seconds, response bytes) of the layout and of each callback
    of the first Studies view, then the seconds of the same callbacks again."""
    app = create_app(root, warm=False)
    client = app.server.test_client()

    def timed(send) -> tuple[float, bytes]:
        started = time.perf_counter()
        response = send()
        elapsed = time.perf_counter() - started
        if response.status_code not in (200, 204) or b"view-error" in response.data:
            raise RuntimeError(f"HTTP {response.status_code}: {response.data[:200]!r}")
        return elapsed, response.data

    layout_s, layout = timed(lambda: client.get("/_dash-layout"))
    signature = ResultsStore(root).signature(study)
    rows = [("layout", layout_s, len(layout))]
    requests = first_view_requests(app, study, signature)
    for name, payload in requests:
        elapsed, data = timed(lambda: client.post("/_dash-update-component", json=payload))
        rows.append((name, elapsed, len(data)))
    again = sum(timed(lambda: client.post("/_dash-update-component", json=payload))[0] for _, payload in requests)
    return rows, again


def time_old_way(root: str, studies: list[str]) -> float:
    """Seconds per study to list it as the list did before summaries: read its trials and
    every part's footer (progress + inventory), on a fresh reader."""
    store = ResultsStore(root)
    started = time.perf_counter()
    for study in studies:
        store.progress(study)
        store.inventory(study)
    return (time.perf_counter() - started) / len(studies)


def time_network_idle(root: str, repeats: int) -> tuple[list[float], list[float], list[float]]:
    """Seconds from navigation to network idle (Playwright's: no request for 500 ms) and to the
    first Studies view complete (its graphs drawn, a page of the list shown), on an empty browser
    cache each time; and the bare Dash page's, measured between them."""
    import logging

    from playwright.sync_api import sync_playwright

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the reference server's access log
    idle, complete, bare = [], [], []
    with sync_playwright() as playwright:
        browser = headless.launch_chromium(playwright)
        with _serving_in_thread(reference_app()) as reference, headless.serving(root) as url:
            _first_page(browser, reference, ["graph"])  # Chromium's own first start is not the page's cost
            for _ in range(repeats):
                bare.append(_first_page(browser, reference, ["graph"]))
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = context.new_page()
                started = time.perf_counter()
                page.goto(url, wait_until="networkidle", timeout=300_000)
                idle.append(time.perf_counter() - started)
                headless.wait_for_graphs(page, headless.VIEW_GRAPHS["Studies"], timeout_ms=120_000)
                page.wait_for_selector("#studies-list td")
                complete.append(time.perf_counter() - started)
                context.close()
        browser.close()
    return idle, complete, bare


def studies_main(args: argparse.Namespace) -> int:
    n = args.studies
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-studies-") as scratch:
        root = args.store or os.path.join(scratch, "root")
        started = time.perf_counter()
        names = make_many_studies(root, n, **_STUDY) if not Path(root).exists() else ResultsStore(root).studies()
        print(f"store: {len(names)} studies (hard-linked copies of one: {_STUDY['n_trials']} search trials, "
              f"{_STUDY['n_folds']} folds, with summaries), written in {time.perf_counter() - started:.1f} s", flush=True)
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)

        rows, again_s = time_studies_view(root, names[0])
        total = sum(seconds for _, seconds, _ in rows)
        print(f"\nfirst Studies view's data at {len(names)} studies (fresh app, at the server):")
        for name, seconds, size in rows:
            print(f"  {name:24s} {seconds * 1e3:6.0f} ms {size / 1e3:7.1f} kB")
        print(f"  {'total':24s} {total * 1e3:6.0f} ms (target {STUDIES_VIEW_TARGET_S:.0f} s: "
              f"{'met' if total <= STUDIES_VIEW_TARGET_S else 'missed'})")
        print(f"the same callbacks again (summaries and tables cached): {again_s * 1e3:.0f} ms")

        share = min(len(names), args.rebuild_share)
        rebuild_s = None
        if share:
            old_root = os.path.join(scratch, "older")
            old_names = make_many_studies(old_root, share, summaries=False, **_STUDY)
            old_rows, _ = time_studies_view(old_root, old_names[0])
            rebuild_s = sum(seconds for _, seconds, _ in old_rows)
            print(f"older store without summaries: first view at {share} studies {rebuild_s:.2f} s (the first "
                  f"page's summaries rebuilt and written; the others as their pages are opened)")

        reference = time_reference_callback(args.repeats)
        per_study = time_old_way(root, names[: min(50, len(names))])
        print(f"reference: bare Dash callback p50 {reference[0] * 1e3:.0f} ms; reading one study's tables the old "
              f"way {per_study * 1e3:.0f} ms, x {len(names)} studies = {per_study * len(names):.0f} s")

        browser = {}
        if args.no_browser:
            pass
        elif not Path(headless.CHROMIUM).exists():
            print("browser: skipped (no /usr/bin/chromium)")
        else:
            idle, complete, bare = time_network_idle(root, args.page_repeats)
            browser = {"network_idle_s": idle, "complete_s": complete, "bare_dash_s": bare}
            print(f"in Chromium at {len(names)} studies, median of {len(idle)}: network idle {np.median(idle):.2f} s, "
                  f"first view complete {np.median(complete):.2f} s (target {PAGE_STUDIES_TARGET_S:.0f} s: "
                  f"{'met' if np.median(idle) <= PAGE_STUDIES_TARGET_S else 'missed'}); "
                  f"reference: bare Dash app, one graph, {np.median(bare):.2f} s "
                  f"(runs: {', '.join(f'{t:.2f}' for t in idle)} / {', '.join(f'{t:.2f}' for t in bare)})")
        print(json.dumps({"studies": len(names), "first_view_ms": {name: s * 1e3 for name, s, _ in rows},
                          "again_ms": again_s * 1e3, "rebuild_first_view_s": rebuild_s,
                          "old_way_s_per_study": per_study, **browser}), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--settle", type=float, default=45.0,
                        help="seconds to let the server build the sweep figures before the second page")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--store", help="reuse (or create) the store here instead of a temporary folder")
    parser.add_argument("--studies", type=int, help="time the Studies view of a root of this many studies instead")
    parser.add_argument("--rebuild-share", type=int, default=30,
                        help="with --studies: the size of an older store (no summaries) whose first view is timed")
    parser.add_argument("--page-repeats", type=int, default=3,
                        help="with --studies: first pages in Chromium (the median is reported)")
    args = parser.parse_args(argv)
    if args.studies:
        return studies_main(args)

    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as scratch:
        root = args.store or scratch
        if not (Path(root) / "demo").exists():
            started = time.perf_counter()
            make_store(root, n_folds=args.folds, n_trials=args.trials, classes=26, seeds=2)
            print(f"store: {args.trials} trials over {args.folds} folds, 26 classes, written in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)

        rows = time_callbacks(root, args.repeats)
        reference = time_reference_callback(args.repeats)
        print(f"\n{'callback (first output)':24s} {'first':>7s} {'uncached p50':>13s} {'p95':>6s} "
              f"{'cached p50':>11s} {'p95':>6s}   (ms)")
        for name, cold, p50, p95, hit50, hit95 in rows:
            print(f"{name:24s} {cold * 1e3:7.0f} {p50 * 1e3:13.0f} {p95 * 1e3:6.0f} {hit50 * 1e3:11.0f} {hit95 * 1e3:6.0f}")
        print(f"{'reference: bare Dash':24s} {'':7s} {reference[0] * 1e3:13.0f} {reference[1] * 1e3:6.0f}")
        worst = max(rows, key=lambda r: r[3])
        failing = [r[0] for r in rows if r[3] > CALLBACK_TARGET_S]
        print(f"worst uncached p95: {worst[3] * 1e3:.0f} ms ({worst[0]}); target {CALLBACK_TARGET_S * 1e3:.0f} ms: "
              + ("met" if not failing else f"missed by {', '.join(failing)}"))
        print(f"worst cached p95: {max(r[5] for r in rows) * 1e3:.0f} ms; worst first call: "
              f"{max(r[1] for r in rows) * 1e3:.0f} ms ({max(rows, key=lambda r: r[1])[0]})")

        if not args.no_browser:
            if not Path(headless.CHROMIUM).exists():
                print("browser: skipped (no /usr/bin/chromium)")
            else:
                print()
                for label, seconds in time_first_page(root, args.settle):
                    verdict = "" if label.startswith("reference") else (
                        f" (target {PAGE_TARGET_S:.0f} s: {'met' if seconds <= PAGE_TARGET_S else 'missed'})")
                    print(f"first page complete in the browser, {label}: {seconds:.2f} s{verdict}")
        print(json.dumps({"callbacks": {r[0]: dict(zip(("first_ms", "uncached_p50_ms", "uncached_p95_ms",
                                                        "cached_p50_ms", "cached_p95_ms"), np.array(r[1:]) * 1e3))
                                        for r in rows}}, default=float), file=sys.stderr)
    return 0
