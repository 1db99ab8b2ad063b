"""`heartbeatai explain` on a trained checkpoint: arrays and figures of one record."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from heartbeatai.cli import main
from heartbeatai.data.prepared import PreparedDataset
from train_fixtures import CLASSES, tiny_run_file, write_planted_dataset


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    torch.set_num_threads(1)
    data = write_planted_dataset(tmp_path_factory.mktemp("planted"), records_per_domain=40)
    out = tmp_path_factory.mktemp("run")
    tiny_run_file(data, **{"optim.epochs": 1}).dump(out / "run.yaml")
    assert main(["train", "--config", str(out / "run.yaml"), "--out", str(out)]) == 0
    return data, out / "checkpoint"


def test_explain_writes_lead_and_time_attributions_and_a_figure_per_class(trained, tmp_path):
    data, checkpoint = trained
    record = "G0001"  # a held-out AF record
    assert main(["explain", "--checkpoint", str(checkpoint), "--data", str(data), "--record", record,
                 "--classes", "AF,RBBB", "--steps", "8", "--out", str(tmp_path)]) == 0
    arrays = np.load(tmp_path / f"{record}.npz")
    length = int(PreparedDataset(data).records.set_index("record_id").loc[record, "length"])
    assert arrays["attributions"].shape == (2, 12, length)
    assert arrays["signal"].shape == (12, length) and bool(arrays["lead_resolved"])
    assert arrays["classes"].tolist() == ["AF", "RBBB"] and arrays["all_classes"].tolist() == list(CLASSES)
    assert any(name.startswith("se_gates_stage") for name in arrays.files)
    for name in CLASSES:
        assert "plotly" in (tmp_path / f"{record}_{name}.html").read_text()[:20000].lower()


def test_explain_defaults_to_the_predicted_classes_and_names_an_unknown_record(trained, tmp_path, capsys):
    data, checkpoint = trained
    assert main(["explain", "--checkpoint", str(checkpoint), "--data", str(data), "--record", "A0003",
                 "--method", "gradcam", "--out", str(tmp_path)]) == 0
    arrays = np.load(tmp_path / "A0003.npz")
    assert len(arrays["classes"]) >= 1 and not bool(arrays["lead_resolved"])
    code = main(["explain", "--checkpoint", str(checkpoint), "--data", str(data), "--record", "nope",
                 "--out", str(tmp_path)])
    assert code == 2 and "nope" in capsys.readouterr().err
