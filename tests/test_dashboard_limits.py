"""The dashboard's limits on hostile requests (issue 12): bodies over the size limit are a
413, malformed callbacks a 400 of one line (never a 500), a huge study name is never
echoed back, and a token never reaches the access log."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from heartbeatai.dashboard import callback_guard
from heartbeatai.dashboard.app import create_app, redact
from heartbeatai.testing.fake_store import make_store

STUDIES_VALUE = {"id": "study", "property": "value"}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    make_store(root, n_folds=2, n_trials=12, classes=6, seeds=1, records_per_fold=6, record_views_per_fold=2)
    return root


@pytest.fixture(scope="module")
def app(root):
    return create_app(str(root), warm=False)


@pytest.fixture
def client(app):
    return app.server.test_client()


def _payload(app, output: str, value_of=lambda item: None) -> dict:
    """A callback request as the page sends it, every value from `value_of`."""
    spec = app.callback_map[output]
    outputs = spec["output"] if isinstance(spec["output"], list) else [spec["output"]]
    outputs = [{"id": o.component_id, "property": o.component_property} for o in outputs]
    return {
        "output": output,
        "outputs": outputs if output.startswith("..") else outputs[0],
        "inputs": [{**item, "value": value_of(item)} for item in spec["inputs"]],
        "state": [{**item, "value": value_of(item)} for item in spec["state"]],
        "changedPropIds": [f"{spec['inputs'][0]['id']}.{spec['inputs'][0]['property']}"],
    }


def _studies_output(app) -> str:
    return next(o for o in app.callback_map if "studies-status.children" in o)


def _studies_payload(app, study="demo") -> dict:
    return _payload(app, _studies_output(app), lambda item: study if item == STUDIES_VALUE else None)


def _one_line(response) -> str:
    text = response.get_data(as_text=True)
    assert text.endswith("\n") and text.count("\n") == 1 and len(text) < 400, text[:400]
    return text


def test_every_callback_of_the_page_passes_the_guard(app, client):
    for output in app.callback_map:
        payload = _payload(app, output, lambda item: "demo" if item == STUDIES_VALUE else None)
        response = client.post("/_dash-update-component", json=payload)
        assert response.status_code in (200, 204), (output, response.status_code, response.data[:300])


def test_a_body_over_the_limit_is_a_413_on_the_callback_endpoint(app, client):
    assert app.server.config["MAX_CONTENT_LENGTH"] == callback_guard.MAX_REQUEST_BYTES <= 4 * 2**20
    body = json.dumps({**_studies_payload(app), "padding": "x" * (callback_guard.MAX_REQUEST_BYTES + 1)})
    response = client.post("/_dash-update-component", data=body, content_type="application/json")
    assert response.status_code == 413 and "larger than 2 MB" in _one_line(response)
    assert client.post("/", data="x" * (50 * 2**20)).status_code == 413  # the issue's 50 MB POST, anywhere


def test_a_body_over_the_limit_without_a_length_is_a_413(app, client):
    import io

    stream = io.BytesIO(b"{" + b" " * (callback_guard.MAX_REQUEST_BYTES + 10) + b"}")
    response = client.post("/_dash-update-component", input_stream=stream, content_type="application/json",
                           headers={"Transfer-Encoding": "chunked"},
                           environ_overrides={"wsgi.input_terminated": True})  # as werkzeug's server sets it
    assert response.status_code == 413


def test_the_issues_200000_inputs_are_refused_not_a_500(app, client):
    response = client.post("/_dash-update-component", json={**_studies_payload(app), "inputs": [STUDIES_VALUE] * 200_000})
    assert response.status_code == 413  # 7 MB of JSON: refused by size before it is parsed


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: {**p, "output": "no-such.children"}, "no callback of this page has the output 'no-such.children'"),
        (lambda p: {**p, "output": "x" * 5000}, "no callback of this page has the output 'xxxxxxxxxxxxx"),
        (lambda p: {**p, "outputs": p["outputs"][:1]}, "outputs: 1 given, this callback takes 4"),
        (lambda p: {**p, "outputs": [{"id": "nope", "property": "children"}] * 4}, "outputs: ('nope', 'children')"),
        (lambda p: {**p, "inputs": [STUDIES_VALUE] * 30_000}, "more than 20000 values in one request"),
        (lambda p: {**p, "inputs": p["inputs"][:1]}, "inputs: 1 given, this callback takes 2"),
        (lambda p: {**p, "inputs": list(reversed(p["inputs"]))}, "inputs: ('signature', 'data') is not study.value"),
        (lambda p: {**p, "inputs": "study"}, "inputs: str given, this callback takes 2"),
        (lambda p: {**p, "state": [STUDIES_VALUE]}, "state: 1 given, this callback takes 0"),
        (lambda p: {**p, "changedPropIds": ["secret.value"]}, "changedPropIds ['secret.value'] are not inputs"),
        (lambda p: {**p, "inputs": [{**STUDIES_VALUE, "value": _nested(40)}, p["inputs"][1]]},
         "values nested deeper than 32 levels"),
        (lambda p: [p], "the request body is not a JSON object"),
        (lambda p: {**p, "outputs": p["outputs"][0]}, "outputs: a dict, this callback takes a list"),
    ],
)
def test_a_malformed_callback_is_a_400_of_one_line(app, client, mutate, reason):
    response = client.post("/_dash-update-component", json=mutate(_studies_payload(app)))
    assert response.status_code == 400
    assert reason in _one_line(response)


def _nested(depth: int):
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("body", [b"{not json", b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe", b""])
def test_a_body_that_is_not_json_or_nested_beyond_reading_is_a_400(client, body):
    response = client.post("/_dash-update-component", data=body, content_type="application/json")
    assert response.status_code == 400 and "not JSON" in _one_line(response)


def test_a_huge_study_name_is_refused_and_never_echoed_back(app, client):
    response = client.post("/_dash-update-component", json=_studies_payload(app, "S" * 1_000_000))
    assert response.status_code == 400 and "a value of 1000000 characters" in _one_line(response)

    long_name = "../" + "S" * 9_000  # under the string bound: the view answers, with an excerpt
    answer = client.post("/_dash-update-component", json=_studies_payload(app, long_name))
    text = answer.get_data(as_text=True)
    assert answer.status_code == 200 and "invalid study name" in text
    assert "S" * 100 not in text and len(answer.data) < 20_000  # an excerpt, whatever the name's length


def test_without_the_token_a_callback_is_refused_before_it_is_checked(root):
    client = create_app(str(root), token="s3cret", warm=False).server.test_client()
    assert client.post("/_dash-update-component", json={"output": "no-such.children"}).status_code == 401


def test_tokens_are_redacted_from_logged_lines():
    assert redact('"GET /?token=s3cret&x=1 HTTP/1.1" 401 -') == '"GET /?token=[redacted]&x=1 HTTP/1.1" 401 -'
    assert redact("GET /_login?TOKEN=abc HTTP/1.1") == "GET /_login?TOKEN=[redacted] HTTP/1.1"


@pytest.mark.timeout(120)
def test_the_token_never_reaches_the_served_dashboards_access_log(root, tmp_path):
    from heartbeatai.dashboard import headless

    log = tmp_path / "server.log"
    token = "tok-never-logged-42"
    with headless.serving(root, log_path=log, args=("--token", token)) as url:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}?token={token}", timeout=10)
        assert refused.value.code == 401
        form = urllib.parse.urlencode({"token": token}).encode()
        opener = urllib.request.build_opener(_NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as logged_in:
            opener.open(urllib.request.Request(url + "_login", data=form), timeout=10)
        assert logged_in.value.code == 303 and "HttpOnly" in logged_in.value.headers["Set-Cookie"]
        request = urllib.request.Request(url + "_dash-layout", headers={"Cookie": logged_in.value.headers[
            "Set-Cookie"].split(";")[0]})
        with urllib.request.urlopen(request, timeout=10) as page:
            assert page.status == 200
    text = log.read_text()
    assert "GET /?token=[redacted]" in text and "POST /_login" in text
    assert token not in text


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
