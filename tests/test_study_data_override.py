"""`--data DIR` studies a prepared dataset the config does not name (studies/configs/paper.yaml's
data path belongs to the user's cluster): one override, no edit of the shipped config."""

from __future__ import annotations

import yaml

from heartbeatai.cli import main
from heartbeatai.study.study_config import with_data_path
from study_fixtures import tiny_study
from train_fixtures import write_planted_dataset


def test_study_plan_takes_the_dataset_from_the_command_line(tmp_path, capsys):
    data = write_planted_dataset(tmp_path / "data", records_per_domain=12)
    config = tiny_study(tmp_path / "nowhere", tmp_path / "runs")
    raw = config.model_dump(mode="json", exclude_none=True)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(raw))

    assert main(["study", "plan", str(tmp_path / "study.yaml")]) == 2  # the config's own path is not there
    assert "nowhere" in capsys.readouterr().err
    assert main(["study", "plan", str(tmp_path / "study.yaml"), "--data", str(data)]) == 0
    assert f"data: {data.resolve()}" in capsys.readouterr().out

    moved = with_data_path(config, data)
    assert moved.data.path == str(data.resolve()) and moved.data.synthetic is None
    assert moved.model_dump(exclude={"data"}) == config.model_dump(exclude={"data"})
