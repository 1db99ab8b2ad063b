"""The Dash app over a results root: ``create_app(root, token=None)``.

It reads the results store and nothing else (DESIGN.md, Dashboard): no Ray, no torch, no
pickles, no file outside the root (study names are validated before any path is built).
When a token is set every request must carry it, once as ``?token=`` (then a cookie) or
as ``Authorization: Bearer``; the command line requires one off loopback.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time

import dash
from flask import Response, g, request

from heartbeatai.dashboard import callbacks, layout
from heartbeatai.dashboard.views import Views
from heartbeatai.results import ResultsStore

log = logging.getLogger(__name__)
TOKEN_COOKIE = "heartbeatai_dashboard_token"
WARM_DELAY_S = 3.0  # after the first page's callbacks, before building the sweep figures
WARM_LATEST_S = 30.0  # build them anyway if nobody has opened the page by then


def create_app(results_root: str, token: str | None = None, warm: bool = True) -> dash.Dash:
    store = ResultsStore(results_root)
    views = Views(store)
    app = dash.Dash(__name__, title="HeartBeatAI results", suppress_callback_exceptions=True,
                    update_title=None, serve_locally=True)

    def page():
        studies = store.studies()
        return layout.page(studies, store.signature(studies[0]) if studies else None)

    app.layout = page
    callbacks.register(app, views)
    app.server.extensions["heartbeatai_views"] = views  # for benchmarks and debugging
    _secure(app.server, token)
    if warm:
        # Optuna's plots take seconds on thousands of trials: build them before anyone asks,
        # but after the first page is out, so the two do not share the CPU.
        first_page = threading.Event()

        @app.server.after_request
        def note_first_page(response):
            if request.path.endswith("_dash-update-component"):
                first_page.set()
            return response

        threading.Thread(target=_warm, args=(views, first_page), name="dashboard-warm", daemon=True).start()
    return app


def _warm(views: Views, first_page: threading.Event) -> None:
    first_page.wait(timeout=WARM_LATEST_S)
    time.sleep(WARM_DELAY_S)
    try:
        views.warm()
    except Exception:  # noqa: BLE001 - a cold cache only costs time on the first visit
        log.exception("warming the sweep figures failed")


def _secure(server, token: str | None) -> None:
    def not_found(_error=None):
        return Response("not found\n", status=404, mimetype="text/plain")

    # Dash answers an unknown component library with a 500: it is a request for nothing.
    server.register_error_handler(dash.exceptions.DependencyException, not_found)
    server.register_error_handler(dash.exceptions.InvalidResourceError, not_found)

    @server.before_request
    def require_token():
        if ".." in request.path.split("/"):
            return not_found()
        if token is None:
            return None
        header = request.headers.get("Authorization", "")
        supplied = (request.args.get("token") or request.cookies.get(TOKEN_COOKIE)
                    or (header[len("Bearer "):] if header.startswith("Bearer ") else None))
        if supplied and hmac.compare_digest(supplied.encode(), token.encode()):
            g.set_token_cookie = "token" in request.args
            return None
        return Response("HeartBeatAI dashboard: a token is required (open the URL with ?token=...)\n", status=401,
                        mimetype="text/plain")

    @server.after_request
    def harden(response):
        if token is not None and g.get("set_token_cookie"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response
