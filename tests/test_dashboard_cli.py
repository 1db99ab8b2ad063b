"""`heartbeatai dashboard`: what it refuses before serving anything."""

from __future__ import annotations

import pytest

from heartbeatai.cli import main
from heartbeatai.dashboard import dashboard_cli
from heartbeatai.dashboard.views import ViewInputError, Views
from heartbeatai.results import ResultsStore


def test_binding_beyond_loopback_without_a_token_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(dashboard_cli.TOKEN_ENV, raising=False)

    status = main(["dashboard", "--results", str(tmp_path), "--host", "0.0.0.0"])

    assert status == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "--token" in error and dashboard_cli.TOKEN_ENV in error


def test_a_missing_results_root_is_one_clear_line(tmp_path, capsys):
    assert main(["dashboard", "--results", str(tmp_path / "nowhere")]) == 2
    assert "no results storage root" in capsys.readouterr().err


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("127.0.0.2", True), ("0.0.0.0", False), ("10.1.2.3", False),
                                            ("example.org", False)])
def test_only_loopback_addresses_count_as_local(host, loopback):
    assert dashboard_cli.is_loopback(host) is loopback


def test_an_empty_results_root_says_so_instead_of_failing(tmp_path):
    views = Views(ResultsStore(tmp_path))

    study, signature, badge = views.refresh(None, None)

    assert (study, signature) == (None, None) and "no studies" in str(badge.children)
    assert views.study_choices(None, None) == []
    with pytest.raises(ViewInputError, match="no study selected"):
        views.studies(None)


def test_the_page_opens_on_an_empty_results_root(tmp_path):
    from heartbeatai.dashboard.app import create_app

    client = create_app(str(tmp_path), warm=False).server.test_client()

    assert client.get("/").status_code == 200
    assert client.get("/_dash-layout").status_code == 200


def test_a_study_folder_given_for_the_root_is_pointed_to_its_parent(tmp_path, capsys):
    (tmp_path / "demo" / "results").mkdir(parents=True)

    assert main(["dashboard", "--results", str(tmp_path / "demo")]) == 2
    assert f"give the storage root that holds it ({tmp_path})" in capsys.readouterr().err


def test_the_dashboard_and_the_results_store_load_neither_torch_nor_ray():
    import subprocess
    import sys

    probe = ("import sys, heartbeatai.testing.fake_store, heartbeatai.dashboard.app; "
             "print(sorted({'torch', 'ray'} & {m.split('.')[0] for m in sys.modules}))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout

    assert loaded.strip() == "[]"


def test_the_first_page_imports_nothing_only_other_views_need():
    import subprocess
    import sys

    heavy = ("optuna", "scipy", "statsmodels", "sklearn", "torch", "ray", "matplotlib")
    code = ("import sys; from heartbeatai.dashboard.app import create_app; "
            f"print(' '.join(m for m in {heavy!r} if m in sys.modules))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()

    assert found == []  # each costs seconds of the first page's start (issue 22)
