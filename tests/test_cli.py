"""Every command of the dispatcher loads its module and answers --help; bad input is one line."""

from __future__ import annotations

import pytest

from heartbeatai import cli


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_registers_and_prints_its_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"heartbeatai {command}" in capsys.readouterr().out


def test_an_unknown_command_is_a_usage_error_not_a_traceback(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["no-such-command"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_no_arguments_prints_the_command_list(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in cli.COMMANDS)
