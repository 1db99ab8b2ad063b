"""Limits on what a request may ask of the dashboard, checked before Dash sees it.

- Bodies over MAX_REQUEST_BYTES are refused by Flask itself (MAX_CONTENT_LENGTH), with a
  413 of one line; that covers `/_dash-update-component` too.
- A callback request must name a callback of this app and carry exactly its outputs,
  inputs and state (ids and properties, in order), with values of bounded depth, count
  and length. Dash's own dispatch would answer an unknown output with a KeyError (HTTP
  500) before any callback runs, so the check sits in a Flask `before_request` and a
  malformed request gets a 400 of one line. Nothing of the request is echoed beyond a
  short, quoted excerpt.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 2 * 2**20  # the largest callback the page sends is a few kB
MAX_VALUE_DEPTH = 32  # nesting of one value (a heatmap's clickData is 4 deep)
MAX_VALUE_NODES = 20_000  # lists, dicts and scalars in one request
MAX_STRING = 10_000  # characters of any one string (a study name has at most 128)
DISPATCH_SUFFIX = "_dash-update-component"


class MalformedCallback(ValueError):
    """The one-line reason a callback request is refused."""


def excerpt(value: Any, limit: int = 40) -> str:
    """A short, quoted excerpt of a value from a request, for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _expected_outputs(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    outputs = spec["output"]
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [(o.component_id, o.component_property) for o in outputs]


def _check_items(items: Any, expected: list[Mapping[str, str]], what: str) -> None:
    if not isinstance(items, list) or len(items) != len(expected):
        count = len(items) if isinstance(items, list) else type(items).__name__
        raise MalformedCallback(f"{what}: {count} given, this callback takes {len(expected)}")
    for item, wanted in zip(items, expected):
        if not isinstance(item, dict) or item.get("id") != wanted["id"] or item.get("property") != wanted["property"]:
            got = (item.get("id"), item.get("property")) if isinstance(item, dict) else item
            raise MalformedCallback(f"{what}: {excerpt(got)} is not {wanted['id']}.{wanted['property']}")


def _check_size(body: Any) -> None:
    stack, nodes = [(body, 0)], 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_VALUE_NODES:
            raise MalformedCallback(f"more than {MAX_VALUE_NODES} values in one request")
        if depth > MAX_VALUE_DEPTH:
            raise MalformedCallback(f"values nested deeper than {MAX_VALUE_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
            stack.extend((k, depth + 1) for k in value)
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
        elif isinstance(value, str) and len(value) > MAX_STRING:
            raise MalformedCallback(f"a value of {len(value)} characters (at most {MAX_STRING})")


def check_callback_body(raw: bytes, callback_map: Mapping[str, Mapping[str, Any]]) -> dict:
    """The parsed body of a well-formed request for one of `callback_map`'s callbacks, else
    MalformedCallback with the reason."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise MalformedCallback("the request body is not JSON (or nested beyond reading)") from None
    if not isinstance(body, dict):
        raise MalformedCallback("the request body is not a JSON object")
    _check_size(body)
    output = body.get("output")
    spec = callback_map.get(output) if isinstance(output, str) else None
    if spec is None:
        raise MalformedCallback(f"no callback of this page has the output {excerpt(output)}")
    outputs = body.get("outputs")
    multi = output.startswith("..")  # Dash's key of a multi-output callback; one output comes as a dict
    if multi != isinstance(outputs, list):
        raise MalformedCallback(f"outputs: a {type(outputs).__name__}, this callback takes "
                                + ("a list" if multi else "one {id, property} object"))
    _check_items(outputs if multi else [outputs], [{"id": i, "property": p} for i, p in _expected_outputs(spec)],
                 "outputs")
    _check_items(body.get("inputs", []), spec["inputs"], "inputs")
    _check_items(body.get("state", []), spec["state"], "state")
    changed = body.get("changedPropIds", [])
    known = {f"{item['id']}.{item['property']}" for item in spec["inputs"]}
    if not isinstance(changed, list) or not all(isinstance(c, str) and c in known for c in changed):
        raise MalformedCallback(f"changedPropIds {excerpt(changed)} are not inputs of this callback")
    return body


def _refuse(status: int, message: str) -> Response:
    return Response(f"HeartBeatAI dashboard: {message}\n", status=status, mimetype="text/plain")


def install(server: Flask, callback_map: Mapping[str, Mapping[str, Any]]) -> None:
    """Set the body limit and check every callback request on `server`."""
    server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES

    @server.errorhandler(413)
    def too_large(_error):
        return _refuse(413, f"request body larger than {MAX_REQUEST_BYTES // 2**20} MB")

    @server.errorhandler(Exception)
    def unanswerable(error):
        """What got past the checks and still broke Dash's dispatch is the request's fault
        (values the page never sends): a 400 of one line; elsewhere Flask's own handling."""
        if isinstance(error, HTTPException):
            return error
        if request.method == "POST" and request.path.endswith(DISPATCH_SUFFIX):
            log.warning("callback request could not be answered: %s: %s", type(error).__name__,
                        str(error).splitlines()[0][:200] if str(error) else "")
            return _refuse(400, f"malformed callback request: it could not be answered ({type(error).__name__})")
        raise error

    @server.before_request
    def check_callback():
        if request.content_length is not None and request.content_length > MAX_REQUEST_BYTES:
            return too_large(None)  # any path: refused from its declared length, never read
        if request.method != "POST" or not request.path.endswith(DISPATCH_SUFFIX):
            return None
        raw = request.get_data(cache=True)
        if request.content_length is None and len(raw) >= MAX_REQUEST_BYTES:
            return too_large(None)  # a chunked body werkzeug cut at the limit
        try:
            check_callback_body(raw, callback_map)
        except MalformedCallback as err:
            return _refuse(400, f"malformed callback request: {err}")
        return None
