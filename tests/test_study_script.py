"""studies/ablation.py finds the shipped configs through the installed package, not the repo layout."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from heartbeatai.study.study_config import load_study_config

SCRIPT = Path(__file__).resolve().parents[1] / "studies" / "ablation.py"


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("ablation_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["smoke", "demo", "paper"])
def test_a_shipped_config_resolves_by_name_from_the_installed_package(ablation, name):
    path = ablation.resolve_config(name)
    assert path.name == f"{name}.yaml"
    assert load_study_config(path).name == name


def _shipped() -> str:
    """The study configs studies/configs ships (run_*.yaml are run files), as the script lists them."""
    folder = Path(__file__).resolve().parents[1] / "studies" / "configs"
    return ", ".join(sorted(p.stem for p in folder.glob("*.yaml") if not p.name.startswith("run_")))


def test_an_unknown_config_name_is_one_line_listing_the_shipped_ones(ablation):
    assert "demo" in _shipped() and "smoke" in _shipped()
    with pytest.raises(SystemExit, match=f"shipped: {_shipped()}"):
        ablation.resolve_config("no-such-study")


def _ray_submit_home(tmp_path: Path) -> Path:
    """`ray submit`'s layout: the script copied into the home folder, beside a checkout named
    heartbeatai (the cluster file's old mount): a namespace package that would shadow the
    installed one."""
    import shutil

    home = tmp_path / "home"
    checkout = home / "heartbeatai"
    shutil.copytree(SCRIPT.parents[1] / "platform", checkout / "platform",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(SCRIPT.parents[1] / "pyproject.toml", checkout / "pyproject.toml")
    shutil.copy(SCRIPT, home / "ablation.py")
    return home


def test_the_script_beside_a_heartbeatai_checkout_imports_the_installed_package(tmp_path):
    import subprocess
    import sys

    home = _ray_submit_home(tmp_path)
    done = subprocess.run([sys.executable, str(home / "ablation.py"), "--config", "no-such-study"],
                          cwd=home, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert f"shipped: {_shipped()}" in done.stderr  # package data found: the installed package


@pytest.mark.slow
@pytest.mark.ray
def test_a_study_runs_from_the_ray_submit_home_layout(tmp_path):
    """Driver and Ray workers alike import the installed package, though the working directory
    (which Ray puts on every worker's path) holds a heartbeatai/ folder."""
    import os
    import subprocess
    import sys

    from heartbeatai.results import ResultsStore
    from heartbeatai.study.study_config import dump_study_config
    from study_fixtures import tiny_study
    from train_fixtures import write_planted_dataset

    home = _ray_submit_home(tmp_path)
    data = write_planted_dataset(tmp_path / "data", records_per_domain=24)
    storage = tmp_path / "runs"
    config = tmp_path / "shadow.yaml"
    config.write_text(dump_study_config(tiny_study(data, storage, name="shadow")))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    env.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0")
    child = subprocess.Popen([sys.executable, str(home / "ablation.py"), "--config", str(config),
                              "--storage", str(storage)], cwd=home, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = child.communicate(timeout=540)
    finally:
        child.kill()
        _kill_session(child.pid)
    assert child.returncode == 0, output[-4000:]
    assert "study shadow finished" in output
    tested = ResultsStore(str(storage)).read("shadow", "fold_metrics", filters={"split": "test"})
    assert {"search", "full", "prevalence"} <= set(tested["arm"])


def _kill_session(session: int) -> None:
    import os
    import signal
    import subprocess

    out = subprocess.run(["ps", "-e", "-o", "pid=,sid="], capture_output=True, text=True).stdout
    for pid in (int(p) for p, sid in (line.split() for line in out.splitlines()) if int(sid) == session):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
