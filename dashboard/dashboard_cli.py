"""`heartbeatai dashboard --results STORAGE_ROOT [--host 127.0.0.1] [--port 8050] [--token T]`."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from heartbeatai.cli import UserError

TOKEN_ENV = "HEARTBEATAI_DASHBOARD_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dashboard", help="serve the results dashboard",
        description="Serve the Dash dashboard over a results storage root (the folder holding the studies).",
    )
    parser.add_argument("--results", required=True, metavar="STORAGE_ROOT",
                        help="storage root: a local folder or a pyarrow filesystem URL (s3://bucket/runs)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument("--token", default=None, help=f"access token, required off loopback; prefer setting {TOKEN_ENV}, "
                        "since the command line is visible to every user (ps)")
    parser.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    if args.token:  # argv is world-readable (ps, /proc/PID/cmdline) for as long as the server runs
        print(f"warning: --token on the command line is visible to every user of this machine (ps); "
              f"set {TOKEN_ENV} instead", file=sys.stderr, flush=True)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if not is_loopback(args.host) and not token:
        raise UserError(f"binding to {args.host} exposes the results beyond this machine: give --token or set {TOKEN_ENV}")
    if "://" not in args.results and not os.path.isdir(args.results):
        raise UserError(f"no results storage root at {args.results}")
    if "://" not in args.results and os.path.isdir(os.path.join(args.results, "results")):
        parent = os.path.dirname(os.path.abspath(args.results))
        raise UserError(f"{args.results} is one study's folder: give the storage root that holds it ({parent})")
    if not 0 < args.port < 65536:
        raise UserError(f"port {args.port} is not a TCP port")

    from heartbeatai.dashboard.app import RedactingRequestHandler, create_app  # Dash loads only now

    app = create_app(args.results, token=token)
    suffix = " (open it and enter the token)" if token else ""
    print(f"heartbeatai dashboard: serving {args.results} at http://{args.host}:{args.port}/{suffix}", flush=True)
    app.run(host=args.host, port=args.port, debug=False, request_handler=RedactingRequestHandler)
    return 0
