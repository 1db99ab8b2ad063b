"""Printed commands run as printed in a fresh shell (heartbeatai.shell): the newcomer's
`make demo` installs into .venv without activating it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from heartbeatai.shell import command, shown_path

VENV_SCRIPT = Path(sys.executable).parent / "heartbeatai"


def test_without_heartbeatai_on_path_the_printed_command_names_the_venv_script_and_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.chdir(VENV_SCRIPT.parents[2])  # where the user stands: the folder holding .venv
    study = Path.cwd() / "runs" / "demo"
    printed = command("study", "status", study)
    assert printed.split()[0] == os.path.relpath(VENV_SCRIPT, Path.cwd())
    assert printed.split()[-1] == "runs/demo"  # relative to where the user stands
    # As the user would paste it: a clean environment, nothing on PATH but the system's.
    help_line = printed.replace("study status runs/demo", "study status --help")
    done = subprocess.run(["bash", "-c", help_line], env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage:" in done.stdout, done.stderr[-2000:]


def test_with_this_heartbeatai_on_path_the_command_is_the_bare_name(monkeypatch):
    monkeypatch.setenv("PATH", f"{VENV_SCRIPT.parent}:/usr/bin:/bin")
    assert command("dashboard", "--results", "runs") == "heartbeatai dashboard --results runs"


def test_paths_outside_the_working_folder_stay_absolute_and_odd_names_are_quoted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shown_path(tmp_path / "a") == "a" and shown_path("/") == "/"
    assert command("export", Path("/elsewhere/my study"))[-len("'/elsewhere/my study'"):] == "'/elsewhere/my study'"
