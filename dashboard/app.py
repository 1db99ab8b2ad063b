"""The Dash app over a results root: ``create_app(root, token=None)``.

It reads the results store and nothing else (DESIGN.md, Dashboard): no Ray, no torch, no
pickles, no file outside the root (study names are validated before any path is built).
When a token is set every request must carry it: as the HttpOnly cookie that the login
form (a POST to /_login) sets, or as ``Authorization: Bearer``. A token is never taken
from the URL, where access logs, proxies and browser history would keep it, and the
access log redacts any ``token=`` a visitor puts there anyway. The command line requires a
token off loopback. Request limits (body size, well-formed callbacks): callback_guard.py.
"""

from __future__ import annotations

import hmac
import html
import logging
import re
import threading
import time

import dash
from flask import Response, redirect, request
from werkzeug.serving import WSGIRequestHandler

from heartbeatai.dashboard import callback_guard, callbacks, layout
from heartbeatai.dashboard.views import Views
from heartbeatai.results import ResultsStore

log = logging.getLogger(__name__)
TOKEN_COOKIE = "heartbeatai_dashboard_token"
LOGIN_PATH = "/_login"
_TOKEN_IN_TEXT = re.compile(r"(?i)(token=)[^&\s\"']*")
WARM_DELAY_S = 3.0  # after the first page's callbacks, before building the sweep figures
WARM_LATEST_S = 30.0  # build them anyway if nobody has opened the page by then


def create_app(results_root: str, token: str | None = None, warm: bool = True) -> dash.Dash:
    store = ResultsStore(results_root)
    views = Views(store)
    app = dash.Dash(__name__, title="HeartBeatAI results", suppress_callback_exceptions=True,
                    update_title=None, serve_locally=True)

    def page():
        studies = views.study_choices(None, None)
        return layout.page(studies, store.signature(studies[0]) if studies else None)

    app.layout = page
    callbacks.register(app, views)
    app.server.extensions["heartbeatai_views"] = views  # for benchmarks and debugging
    _secure(app.server, token)  # first: a visitor without the token learns nothing of the callbacks
    callback_guard.install(app.server, app.callback_map)
    if warm:
        # A sweep's figures read a fold's thousands of trials: build them before anyone asks,
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


class RedactingRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler with any `token=` value in a logged line replaced."""

    def log(self, type: str, message: str, *args) -> None:  # noqa: A002 - werkzeug's signature
        super().log(type, "%s", redact(message % args if args else message))


def redact(text: str) -> str:
    return _TOKEN_IN_TEXT.sub(r"\1[redacted]", text)


_LOGIN_FORM = """<!doctype html><html><head><meta charset="utf-8"><title>HeartBeatAI results</title></head>
<body style="font-family: sans-serif; margin: 4em auto; max-width: 24em">
<h3>HeartBeatAI results</h3><p>{message}</p>
<form method="post" action="{action}"><input type="password" name="token" autocomplete="current-password"
 placeholder="access token" autofocus style="width: 100%"><p><button type="submit">Open</button></p></form>
</body></html>
"""


def _login_page(status: int, message: str) -> Response:
    page = _LOGIN_FORM.format(message=html.escape(message), action=html.escape(request.script_root + LOGIN_PATH))
    return Response(page, status=status, mimetype="text/html")


def _secure(server, token: str | None) -> None:
    def not_found(_error=None):
        return Response("not found\n", status=404, mimetype="text/plain")

    # Dash answers an unknown component library with a 500: it is a request for nothing.
    server.register_error_handler(dash.exceptions.DependencyException, not_found)
    server.register_error_handler(dash.exceptions.InvalidResourceError, not_found)

    def matches(supplied: str | None) -> bool:
        return bool(supplied) and hmac.compare_digest(supplied.encode(), token.encode())

    @server.before_request
    def require_token():
        if ".." in request.path.split("/"):
            return not_found()
        if token is None:
            return None
        if request.path == LOGIN_PATH and request.method == "POST":
            if not matches(request.form.get("token")):
                return _login_page(401, "That is not the token. Enter the dashboard's access token.")
            response = redirect(request.script_root + "/", code=303)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", secure=request.is_secure)
            return response
        header = request.headers.get("Authorization", "")
        if matches(request.cookies.get(TOKEN_COOKIE)) or (header.startswith("Bearer ") and matches(header[7:])):
            return None
        if request.method == "GET" and not request.path.startswith(("/_dash", "/assets")):
            note = " A token in the URL is not accepted." if "token" in request.args else ""
            return _login_page(401, "This dashboard asks for its access token." + note)
        return Response("HeartBeatAI dashboard: a token is required (log in at /)\n", status=401, mimetype="text/plain")

    @server.after_request
    def harden(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response
