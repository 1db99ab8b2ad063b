"""`heartbeatai dashboard --token T` warns that a command line is visible to every user
(issue 20, item 9): `ps` shows the token to anyone on the machine for as long as the
server runs, while the environment variable is not shown."""

from __future__ import annotations

from heartbeatai.cli import main
from heartbeatai.dashboard import dashboard_cli


def test_a_token_on_the_command_line_prints_one_line_recommending_the_environment_variable(tmp_path, capsys):
    main(["dashboard", "--results", str(tmp_path / "nowhere"), "--token", "s3cret-t0ken"])
    warning = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1
    assert "--token" in warning[0] and dashboard_cli.TOKEN_ENV in warning[0] and "ps" in warning[0]
    assert "s3cret-t0ken" not in warning[0]


def test_a_token_from_the_environment_prints_no_warning(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(dashboard_cli.TOKEN_ENV, "s3cret-t0ken")
    main(["dashboard", "--results", str(tmp_path / "nowhere")])
    assert "warning:" not in capsys.readouterr().err
