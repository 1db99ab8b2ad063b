"""A checkpoint that is not the platform's is one line from `evaluate` and `explain`, never a
traceback, and loading stays `weights_only=True`: nothing in a foreign file is run.

(`export --check` loads no checkpoint: it retrains the exported run file and compares its
selection metric with the stored one, so it has no checkpoint case of its own.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from heartbeatai.cli import main
from heartbeatai.training.checkpoint import CHECKPOINT_FILE, CheckpointError, load_checkpoint, save_checkpoint
from heartbeatai.training.factory import model_from_config
from heartbeatai.training.predict import load_trained_model
from train_fixtures import CLASSES, tiny_run_file, tiny_trial, write_planted_dataset

_RAN = []


class Payload:
    """Would run code when unpickled (if anything here ever unpickled freely)."""

    def __reduce__(self):
        return (_RAN.append, ("unpickled",))


def _state(**changes) -> dict:
    trial = tiny_trial()
    state = {
        "model": model_from_config(trial, len(CLASSES)).state_dict(),
        "config": trial.model_dump(mode="json"),
        "classes": list(CLASSES),
        "thresholds": torch.full((len(CLASSES),), 0.5),
        "fs": 100,
    }
    state.update(changes)
    return {k: v for k, v in state.items() if v is not None}


def _other_weights() -> dict:
    return model_from_config(tiny_trial(**{"model.widths": [8, 16, 64]}), len(CLASSES)).state_dict()


def _write(folder: Path, case: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CHECKPOINT_FILE
    if case == "directory without the file":
        return folder
    if case == "not a torch file":
        path.write_text("model: yes\nweights: [1, 2, 3]\n")
    elif case == "truncated":
        save_checkpoint(folder, _state())
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif case == "empty file":
        path.write_bytes(b"")
    elif case == "pickled objects":
        torch.save({"format_version": 1, "payload": Payload()}, path)
    elif case == "a plain tensor":
        torch.save(torch.zeros(3), path)
    elif case == "another model's state dict":
        torch.save(model_from_config(tiny_trial(), 2).state_dict(), path)
    elif case == "wrong keys":
        torch.save({"format_version": 1, "weights": {}, "labels": []}, path)
    elif case == "other format version":
        save_checkpoint(folder, _state())
        torch.save({**torch.load(path, weights_only=True), "format_version": 7}, path)
    elif case == "keys of the wrong type":
        save_checkpoint(folder, _state(classes="AF,RBBB"))
    elif case == "thresholds disagree with classes":
        save_checkpoint(folder, _state(thresholds=torch.zeros(5)))
    elif case == "invalid config":
        save_checkpoint(folder, _state(config={"model": {"widths": "wide"}}))
    elif case == "weights of another model":
        save_checkpoint(folder, _state(model=_other_weights()))
    elif case == "weights that are not tensors":
        save_checkpoint(folder, _state(model={"stem.weight": [1, 2]}))
    elif case == "age and sex in an older encoding":  # written before the encoding was recorded
        trial = tiny_trial(**{"model.demographics": True})
        save_checkpoint(folder, _state(model=model_from_config(trial, len(CLASSES)).state_dict(),
                                       config=trial.model_dump(mode="json")))
    else:
        raise ValueError(case)
    return folder


CASES = {
    "directory without the file": "is not a checkpoint (no checkpoint.pt in it)",
    "not a torch file": "not a torch checkpoint",
    "truncated": "truncated or damaged",
    "empty file": "truncated or damaged",
    "pickled objects": "holds pickled objects other than tensors and plain containers",
    "a plain tensor": "holds a Tensor, not a dict",
    "another model's state dict": "format_version missing",
    "wrong keys": "not a complete HeartBeatAI checkpoint (no model, config, classes, thresholds, fs)",
    "other format version": "format_version 7",
    "keys of the wrong type": "classes of the wrong type",
    "thresholds disagree with classes": "classes and thresholds disagree",
    "invalid config": "config is not a valid trial configuration (model.widths",
    "weights of another model": "weights do not fit the model its config describes (tensor shapes differ)",
    "weights that are not tensors": "weights are not a state dict of tensors",
    "age and sex in an older encoding": "reads age and sex as 'age/100, sex, age known'",
}


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, Path]:
    data = write_planted_dataset(tmp_path_factory.mktemp("planted"), records_per_domain=6)
    run = tmp_path_factory.mktemp("run") / "run.yaml"
    tiny_run_file(data).dump(run)
    return data, run


@pytest.mark.parametrize("case", CASES)
def test_a_foreign_checkpoint_is_a_checkpoint_error_naming_what_is_wrong(tmp_path, case):
    folder = _write(tmp_path / "ckpt", case)
    with pytest.raises(CheckpointError) as raised:
        load_trained_model(folder, torch.device("cpu"))
    message = str(raised.value)
    assert CASES[case] in message and "\n" not in message and str(folder) in message
    assert not _RAN


@pytest.mark.parametrize("command", ["evaluate", "explain"])
@pytest.mark.parametrize("case", CASES)
def test_evaluate_and_explain_name_a_foreign_checkpoint_in_one_line(planted, tmp_path, capsys, command, case):
    data, run = planted
    folder = _write(tmp_path / "ckpt", case)
    argv = {"evaluate": ["evaluate", "--run", str(run)], "explain": ["explain", "--record", "A0001"]}[command]
    code = main([*argv, "--checkpoint", str(folder), "--data", str(data), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(f"heartbeatai {command}: error: ") and CASES[case] in err
    assert not _RAN and not (tmp_path / "out").exists()


def test_the_checkpoint_file_itself_may_be_named(tmp_path):
    save_checkpoint(tmp_path, _state())
    assert load_checkpoint(tmp_path / CHECKPOINT_FILE)["classes"] == list(CLASSES)
    model, state, _ = load_trained_model(tmp_path, torch.device("cpu"))
    assert state["fs"] == 100 and not model.training
