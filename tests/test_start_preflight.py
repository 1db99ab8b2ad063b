"""A study's start checks its config once (study/preflight.py), whichever way it is started,
and says each warning once."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from heartbeatai.cli import main as cli_main
from heartbeatai.study import preflight, study_run
from heartbeatai.study.study_run import CONFIG_NAME

SCRIPT = Path(__file__).resolve().parents[1] / "studies" / "ablation.py"
# One arm seed: valid, with a warning (no p-value per fold) that a start prints.
CONFIG = {"name": "checked", "data": {"synthetic": {"records": 40}}, "seeds": [1]}


def _ablation_main(argv: list[str]) -> int:
    spec = importlib.util.spec_from_file_location("ablation_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


STARTS = {
    "heartbeatai study run": lambda config, storage: cli_main(["study", "run", str(config), "--storage", str(storage)]),
    "studies/ablation.py": lambda config, storage: _ablation_main(["--config", str(config), "--storage", str(storage)]),
}


@pytest.mark.parametrize("start", list(STARTS))
def test_a_start_checks_the_config_once_and_warns_once(start, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    checks = []
    real = preflight.check_study
    monkeypatch.setattr(preflight, "check_study", lambda cfg, **kw: checks.append(kw) or real(cfg, **kw))
    monkeypatch.setattr(study_run, "_run", lambda *args: None)  # stop once the study folder is set up

    assert STARTS[start](config, tmp_path / "runs") == 0

    assert (tmp_path / "runs" / "checked" / CONFIG_NAME).is_file()
    assert len(checks) == 1 and checks[0]["local_cpus"] is not None  # sized for this machine
    assert capsys.readouterr().out.count("warning: seeds: 1 arm seed(s)") == 1


def test_a_config_that_cannot_run_leaves_no_study_behind(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "data": {"synthetic": {"records": 40, "domains": ["cpsc", "nowhere"]}}}))

    assert cli_main(["study", "run", str(config), "--storage", str(tmp_path / "runs")]) != 0

    assert "data.synthetic.domains[1]: unknown synthetic domain 'nowhere'" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "checked").exists()
