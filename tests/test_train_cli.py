"""`heartbeatai train` and `heartbeatai evaluate` on a run file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from heartbeatai.cli import main
from heartbeatai.run_file import RunFile
from train_fixtures import CLASSES, tiny_run_file, write_planted_dataset


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return write_planted_dataset(tmp_path_factory.mktemp("planted"))


@pytest.fixture(scope="module")
def trained(planted, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    tiny_run_file(planted).dump(out / "given.yaml")
    assert main(["train", "--config", str(out / "given.yaml"), "--out", str(out)]) == 0
    return out


def test_train_writes_metrics_checkpoints_and_the_effective_run_file(trained, planted):
    summary = json.loads((trained / "metrics.json").read_text())
    assert [m["epoch"] for m in summary["epochs"]] == [1, 2]
    assert summary["selection_metric"] == "val_macro_auroc"
    assert summary["best"]["val_macro_auroc"] == max(m["val_macro_auroc"] for m in summary["epochs"])
    assert (trained / "checkpoint" / "checkpoint.pt").is_file()
    assert (trained / "best_checkpoint" / "checkpoint.pt").is_file()
    run = RunFile.load(trained / "run.yaml")
    assert run.provenance.folds_hash and run.provenance.dataset_fingerprint == run.data.fingerprint
    assert "torch" in run.provenance.packages and run.provenance.classes == CLASSES
    assert not (trained / ".staging").exists()
    assert {m["precision"] for m in summary["epochs"]} == {"fp32"}  # conftest pins it


def test_a_run_records_the_precision_it_trained_in(planted, tmp_path, monkeypatch):
    # auto's answer depends on the CPU's flags (precision.py), so the run must say which it got.
    monkeypatch.setenv("HEARTBEATAI_PRECISION", "bf16")
    tiny_run_file(planted, **{"optim.epochs": 1}).dump(tmp_path / "run.yaml")
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["final"]["precision"] == "bf16"


def test_train_prints_stamped_progress_per_epoch_with_the_time_left(planted, tmp_path, capsys):
    tiny_run_file(planted).dump(tmp_path / "run.yaml")
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--epochs", "2", "--out", str(tmp_path / "o")]) == 0
    lines = capsys.readouterr().out.splitlines()
    lines = lines[next(i for i, line in enumerate(lines) if "training lodo" in line):]  # after the threads line
    assert lines and all(re.match(r"\[\d+:\d\d:\d\d\] ", line) for line in lines)
    [first, last] = [line for line in lines if re.search(r"\] epoch \d/2 ", line)]
    assert "epoch 1/2" in first and re.search(r"; about \d+ s left$", first)
    assert "epoch 2/2" in last and "left" not in last  # nothing left to estimate
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["final"]["epoch"] == 2


def test_train_refuses_a_dataset_with_another_fingerprint_unless_allowed(planted, tmp_path, capsys):
    run = tiny_run_file(planted, **{"optim.epochs": 1})
    run.model_copy(update={"data": run.data.model_copy(update={"fingerprint": "0" * 32})}).dump(tmp_path / "run.yaml")
    args = ["train", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "--allow-other-data" in capsys.readouterr().err
    assert main(args + ["--allow-other-data"]) == 0


def test_train_reports_a_bad_run_file_in_one_line_naming_the_key(planted, tmp_path, capsys):
    (tmp_path / "run.yaml").write_text(
        f"data: {{path: {planted}}}\nfold_id: lodo:gamma\nclasses: [AF]\ntrial: {{mixstyle: {{p: 2}}}}\n"
    )
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "trial.mixstyle.p" in err and len(err.splitlines()) == 1


def test_train_names_an_unknown_fold(planted, tmp_path, capsys):
    tiny_run_file(planted).dump(tmp_path / "run.yaml")
    code = main(["train", "--config", str(tmp_path / "run.yaml"), "--fold", "lodo:nowhere", "--out", str(tmp_path)])
    assert code == 2 and "lodo:nowhere" in capsys.readouterr().err


def test_evaluate_scores_every_record_of_a_dataset_with_the_checkpoint(trained, planted, tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", "--run", str(trained / "run.yaml"), "--checkpoint", str(trained / "best_checkpoint"),
                 "--data", str(planted), "--out", str(out)]) == 0
    predictions = pd.read_parquet(out / "predictions.parquet")
    assert len(predictions) == 300 and {"p_AF", "y_RBBB", "domain"} <= set(predictions.columns)
    per_class = pd.read_csv(out / "class_metrics.csv")
    assert per_class["class"].tolist() == list(CLASSES)
    macro = json.loads((out / "metrics.json").read_text())
    assert macro["records"] == 300 and macro["macro_auroc"] >= 0.7
    assert (out / macro["data"]).resolve() == planted.resolve() and not Path(macro["data"]).is_absolute()


def test_evaluate_split_test_rescores_the_run_on_its_folds_sealed_test_split(trained, planted, tmp_path, capsys):
    from sklearn.metrics import roc_auc_score

    from heartbeatai.data.folds import fold_records, read_folds

    every, split = tmp_path / "every", tmp_path / "split"
    common = ["evaluate", "--run", str(trained / "run.yaml"), "--checkpoint", str(trained / "best_checkpoint"),
              "--data", str(planted)]
    assert main([*common, "--out", str(every)]) == 0
    assert main([*common, "--split", "test", "--out", str(split)]) == 0
    fold = yaml.safe_load((trained / "run.yaml").read_text())["fold_id"]
    test_ids = fold_records(read_folds(planted, "lodo")[0], fold)["test"]
    predictions = pd.read_parquet(split / "predictions.parquet")
    assert sorted(predictions["record_id"]) == sorted(test_ids) and 0 < len(test_ids) < 300
    # Each class's AUROC is the one sklearn gives on those records of the all-records predictions.
    subset = pd.read_parquet(every / "predictions.parquet").set_index("record_id").loc[test_ids]
    per_class = pd.read_csv(split / "class_metrics.csv").set_index("class")
    for name in CLASSES:
        if 0 < subset[f"y_{name}"].sum() < len(subset):
            assert per_class.loc[name, "auroc"] == pytest.approx(roc_auc_score(subset[f"y_{name}"], subset[f"p_{name}"]))
    metrics = json.loads((split / "metrics.json").read_text())
    assert metrics["fold_id"] == fold and metrics["split"] == "test" and metrics["records"] == len(test_ids)
    capsys.readouterr()
    assert main([*common, "--fold", "lodo:nowhere", "--out", str(tmp_path / "x")]) == 2
    assert "lodo:nowhere" in capsys.readouterr().err


def test_an_interrupted_train_resumes_with_resume_and_ends_as_an_uninterrupted_one(trained, planted, tmp_path,
                                                                                   monkeypatch):
    import heartbeatai.training.loop as train_module

    tiny_run_file(planted).dump(tmp_path / "run.yaml")
    args = ["train", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "o")]
    progress = train_module.format_progress

    def interrupt_after_first_epoch(metrics, epochs):
        if metrics["epoch"] == 1:
            raise KeyboardInterrupt
        return progress(metrics, epochs)

    monkeypatch.setattr(train_module, "format_progress", interrupt_after_first_epoch)
    assert main(args) == 130
    monkeypatch.setattr(train_module, "format_progress", progress)
    assert main(args + ["--resume"]) == 0

    def epochs(out: Path) -> list[dict]:
        return [{k: v for k, v in m.items() if k != "epoch_seconds"}
                for m in json.loads((out / "metrics.json").read_text())["epochs"]]

    assert epochs(tmp_path / "o") == epochs(trained)


@pytest.mark.slow
@pytest.mark.ray
def test_train_with_two_workers_runs_ddp_on_a_local_ray_and_writes_the_same_outputs(planted, tmp_path):
    tiny_run_file(planted).dump(tmp_path / "run.yaml")
    out = tmp_path / "o"
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--workers", "2", "--out", str(out)]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert [m["epoch"] for m in summary["epochs"]] == [1, 2]
    assert summary["final"]["val_macro_auroc"] >= 0.7
    assert (out / "checkpoint" / "checkpoint.pt").is_file() and (out / "best_checkpoint" / "checkpoint.pt").is_file()


def test_best_checkpoint_follows_the_selection_metrics_direction(planted, tmp_path, capsys):
    run = tiny_run_file(planted, **{"optim.epochs": 3})
    run.model_copy(update={"selection_metric": "macro_auroc"}).dump(tmp_path / "run.yaml")  # an oracle's metric
    args = ["train", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "--selection-metric" in capsys.readouterr().err and not (tmp_path / "o").exists()

    assert main(args + ["--selection-metric", "val_loss"]) == 0
    summary = json.loads((tmp_path / "o" / "metrics.json").read_text())
    losses = [m["val_loss"] for m in summary["epochs"]]
    assert summary["best"]["val_loss"] == min(losses)
    best_state = torch.load(tmp_path / "o" / "best_checkpoint" / "checkpoint.pt", weights_only=True)
    assert best_state["epoch"] == summary["best"]["epoch"]


def test_train_into_an_existing_run_asks_for_resume_or_force(trained, planted, tmp_path, capsys):
    tiny_run_file(planted, **{"optim.epochs": 1}).dump(tmp_path / "run.yaml")
    out = tmp_path / "o"
    args = ["train", "--config", str(tmp_path / "run.yaml"), "--out", str(out)]
    assert main(args) == 0
    before = (out / "metrics.json").read_text()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"heartbeatai train: error: --out {out} holds a run already (metrics.json, checkpoint, "
                   "best_checkpoint): --resume continues it, --force replaces it"]
    assert (out / "metrics.json").read_text() == before
    assert main(args + ["--resume", "--force"]) == 2
    assert main(args + ["--force"]) == 0
    assert json.loads((out / "metrics.json").read_text())["final"]["epoch"] == 1


def test_the_written_run_file_names_its_data_relative_to_itself(trained, planted):
    text = (trained / "run.yaml").read_text()
    assert str(planted) not in text and str(trained) not in text
    assert RunFile.load(trained / "run.yaml").data.path == str(planted.resolve())


def test_a_run_file_moved_with_its_dataset_still_finds_it(planted, tmp_path):
    import shutil

    shutil.copytree(planted, tmp_path / "here" / "data")
    tiny_run_file(tmp_path / "here" / "data").dump(tmp_path / "here" / "runs" / "run.yaml")
    shutil.move(tmp_path / "here", tmp_path / "there")
    assert RunFile.load(tmp_path / "there" / "runs" / "run.yaml").data.path == str((tmp_path / "there" / "data"))


def test_a_run_file_naming_no_classes_takes_those_with_positives_and_says_so(planted, tmp_path, capsys):
    run = tiny_run_file(planted, **{"optim.epochs": 1}).model_copy(update={"classes": None})
    run.dump(tmp_path / "run.yaml")
    assert "classes" not in yaml.safe_load((tmp_path / "run.yaml").read_text()) or \
        yaml.safe_load((tmp_path / "run.yaml").read_text())["classes"] is None
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    written = RunFile.load(tmp_path / "o" / "run.yaml")
    assert set(CLASSES) <= set(written.classes) <= {"AF", "RBBB", "NSR"}  # the planted dataset's positives
    assert f"classes: the run file names none; taking the {len(written.classes)} with positives in lodo:gamma's " \
           f"training split: {', '.join(written.classes)}" in out


def test_the_readme_flow_trains_the_example_run_file_and_explains_a_listed_record(planted, tmp_path, capsys):
    example = Path(__file__).resolve().parents[1] / "studies" / "configs" / "run_example.yaml"
    out = tmp_path / "run"
    assert main(["train", "--config", str(example), "--data", str(planted), "--fold", "lodo:gamma",
                 "--epochs", "1", "--out", str(out)]) == 0
    assert "classes: the run file names none" in capsys.readouterr().out
    assert main(["data", "records", str(planted), "--domain", "gamma", "--class", "AF"]) == 0
    record = capsys.readouterr().out.splitlines()[1].split("\t")[0]
    assert main(["explain", "--checkpoint", str(out / "best_checkpoint"), "--data", str(planted), "--record", record,
                 "--steps", "2", "--out", str(tmp_path / "explain")]) == 0
    assert (tmp_path / "explain" / f"{record}.npz").is_file()


def test_precision_chooses_autocast_and_refuses_an_unknown_value(monkeypatch):
    import torch

    from heartbeatai.training import precision
    from heartbeatai.training.precision import ENV, autocast, autocast_enabled

    cpu = torch.device("cpu")
    for native in (False, True):  # auto: bf16 on a CPU only where it computes bf16 natively
        monkeypatch.setattr(precision, "native_bf16_cpu", lambda: native)
        for value, on_cpu, on_cuda in (("auto", native, True), ("fp32", False, False), ("bf16", True, True)):
            monkeypatch.setenv(ENV, value)
            assert (autocast_enabled("cpu"), autocast_enabled("cuda")) == (on_cpu, on_cuda), (value, native)
            with autocast(cpu):  # on CPU a matmul then runs in bf16 exactly when enabled
                out = torch.ones(2, 2) @ torch.ones(2, 2)
            assert (out.dtype == torch.bfloat16) == on_cpu
    monkeypatch.setenv(ENV, "fp16")
    with pytest.raises(ValueError, match="fp16"):
        autocast(cpu)
