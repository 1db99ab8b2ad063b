"""`heartbeatai train` and `heartbeatai evaluate`: one run from a run file, and its test.

`train` runs a run file as it is (what `export` writes), with command-line flags
overriding its fields. One worker trains in this process (on the GPU when given
--gpus-per-worker, else on the CPU); more start a local Ray (loopback only) unless
RAY_ADDRESS names a cluster to join. Under --out it writes:

    run.yaml            the effective run file, provenance filled in
    metrics.json        per-epoch metrics, the final and the best epoch
    checkpoint/         the last epoch's checkpoint (resume with --resume)
    ray/                Ray Train's run folder (runs with several workers; --resume
                        continues it, a run without --resume starts it afresh)
    best_checkpoint/    the epoch best by the run's selection metric
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from heartbeatai.console import elapsed_text, stamped_printer
from heartbeatai.cli import UserError
from heartbeatai.config import ConfigError
from heartbeatai.run_file import Provenance, RunFile
from heartbeatai.training import run_inputs
from heartbeatai.training.precision import ENV as PRECISION_ENV
from heartbeatai.training.precision import PRECISIONS
from heartbeatai.training.threads import add_threads_argument, apply_threads

CHECKPOINT_DIR = "checkpoint"
BEST_CHECKPOINT_DIR = "best_checkpoint"
RAY_DIR = "ray"
RAY_RUN_NAME = "train"


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser("train", help="one training run from a run file", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    train.add_argument("--config", required=True, type=Path, metavar="RUNFILE", help="run file (YAML)")
    train.add_argument("--data", type=Path, metavar="PREPARED", help="prepared dataset (overrides data.path)")
    train.add_argument("--fold", metavar="FOLD_ID", help="fold id, e.g. lodo:georgia (overrides fold_id)")
    train.add_argument("--workers", type=int, default=1, help="DDP workers; more than 1 runs on Ray (default 1)")
    train.add_argument("--gpus-per-worker", type=float, default=0, help="GPUs per worker (default 0: CPU)")
    train.add_argument("--epochs", type=int, help="override trial.optim.epochs")
    train.add_argument("--precision", choices=PRECISIONS,
                       help="auto (the default, or $HEARTBEATAI_PRECISION: bf16 autocast on GPU and on CPUs with "
                            "native bf16, fp32 on others), fp32, or bf16 (on any CPU)")
    train.add_argument("--selection-metric", help="metric choosing best_checkpoint (overrides selection_metric)")
    train.add_argument("--allow-other-data", action="store_true",
                       help="train although the dataset's fingerprint differs from the run file's")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in OUT")
    train.add_argument("--force", action="store_true", help="replace the run OUT holds (default: refuse)")
    train.add_argument("--out", required=True, type=Path, metavar="DIR")
    add_threads_argument(train)
    train.set_defaults(func=train_command)

    evaluate = subparsers.add_parser(
        "evaluate", help="score a trained run's checkpoint on a prepared dataset (all records, or one fold's split)",
        description="Score a checkpoint with its own thresholds. Writes OUT/metrics.json (macro AUROC, F1, AUPRC, "
                    "challenge score; the checkpoint and data it used, the data fingerprint), "
                    "OUT/class_metrics.csv (per class: positives, AUROC, F1, threshold) and "
                    "OUT/predictions.parquet (per record: domain, p_<class>, y_<class>). "
                    "Without --fold/--split every record of --data is scored; `--split test` re-scores the run "
                    "on its own fold's sealed test split.")
    evaluate.add_argument("--run", required=True, type=Path, metavar="RUNFILE",
                          help="the run file the checkpoint was trained from (run.yaml in a train --out folder, or "
                               "an export): its classes and its fold")
    evaluate.add_argument("--checkpoint", required=True, type=Path, metavar="CKPT",
                          help="a checkpoint folder, e.g. RUN/best_checkpoint (weights, config, thresholds)")
    evaluate.add_argument("--data", required=True, type=Path, metavar="DIR",
                          help="prepared dataset (`heartbeatai prepare`); it may be another one than the run's")
    evaluate.add_argument("--fold", default=None, metavar="FOLD_ID",
                          help="score only this fold's --split of DIR's fold plan (default: the run file's fold "
                               "when --split is given)")
    evaluate.add_argument("--split", choices=("train", "val", "test"), default=None,
                          help="which split of the fold (default with --fold: test)")
    evaluate.add_argument("--batch-size", type=int, default=64, help="records per forward pass (default 64)")
    evaluate.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the three files above")
    add_threads_argument(evaluate)
    evaluate.set_defaults(func=evaluate_command)


# ------------------------------------------------------------------------------ train


def train_command(args: argparse.Namespace) -> int:
    if args.precision:
        os.environ[PRECISION_ENV] = args.precision  # read by every worker this command starts
    run = run_inputs.effective_run_file(args)
    dataset = run_inputs.open_prepared(Path(run.data.path))
    run_inputs.check_data(run, dataset, allow_other=args.allow_other_data)
    if args.workers < 1:
        raise UserError("--workers must be at least 1")
    out: Path = args.out
    replaced = run_inputs.claim_out_dir(out, resume=args.resume, force=args.force)
    device = run_inputs.local_device(args.gpus_per_worker) if args.workers == 1 else None
    folds_file = run_inputs.folds_file(dataset.path, run.protocol, run.fold_id)
    run = run_inputs.settle_classes(run, dataset)
    run = run.model_copy(update={
        "data": run.data.model_copy(update={"fingerprint": dataset.fingerprint}),
        "provenance": Provenance.collect(dataset_fingerprint=dataset.fingerprint, folds_file=folds_file,
                                         classes=run.classes, origin=run.provenance),
    })
    if args.workers == 1:  # Ray sets its workers' threads from the CPUs each is given
        apply_threads(args.threads)
    from heartbeatai.training.spec import TrainSpec

    try:
        spec = TrainSpec(trial=run.trial, data_path=str(dataset.path), fold_id=run.fold_id, classes=run.classes,
                         selection_metric=run.selection_metric, out_dir=str(out / ".staging"))
    except ValueError as err:
        raise UserError(f"{err} (--selection-metric)") from None
    resume_from = out / CHECKPOINT_DIR if args.workers == 1 else out / RAY_DIR / RAY_RUN_NAME
    if args.resume and not resume_from.is_dir():
        raise UserError(f"--resume: nothing to resume in {resume_from}")
    run_inputs.clear(replaced)  # --force: the run OUT held, now that every check has passed
    out.mkdir(parents=True, exist_ok=True)
    run.dump(out / "run.yaml")
    say = stamped_printer()  # each line carries the time since the command started, as a study's do
    say(f"training {run.fold_id} on {dataset.path} ({len(run.classes)} classes, "
        f"{run.trial.optim.epochs} epochs, {args.workers} worker(s))")
    if args.workers == 1:
        history = _train_in_process(spec, out, resume_from if args.resume else None, device, say)
    else:
        history = _train_on_ray(spec, out, args.workers, args.gpus_per_worker, resume=args.resume)
    shutil.rmtree(out / ".staging", ignore_errors=True)
    summary = _write_metrics(out, history, run.selection_metric)
    best = summary["best"]
    say(f"done: best epoch {best.get('epoch')} {run.selection_metric} {best.get(run.selection_metric, float('nan')):.4f}; "
        f"checkpoints in {out / CHECKPOINT_DIR} and {out / BEST_CHECKPOINT_DIR}")
    return 0


def _train_in_process(spec, out: Path, resume: Path | None, device, say=print) -> list[dict[str, Any]]:
    from heartbeatai.training.loop import format_progress, run_training

    history: list[dict[str, Any]] = []

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        # Checkpoints first, then metrics, then the progress line: whatever is printed
        # is already durable, so an interrupted run resumes from the last epoch shown.
        _replace_dir(checkpoint_dir, out / CHECKPOINT_DIR)
        history.append(metrics)
        if best_epoch(history, spec.selection_metric) is metrics or not (out / BEST_CHECKPOINT_DIR).exists():
            _replace_dir(checkpoint_dir, out / BEST_CHECKPOINT_DIR)
        _write_metrics(out, history, spec.selection_metric)
        left = spec.trial.optim.epochs - int(metrics["epoch"])
        timed = [m["epoch_seconds"] for m in history if "epoch_seconds" in m]
        estimate = f"; about {elapsed_text(left * sum(timed) / len(timed))} left" if left and timed else ""
        say(format_progress(metrics, spec.trial.optim.epochs) + estimate)

    if resume is not None:
        from heartbeatai.training.checkpoint import load_checkpoint

        history.extend(load_checkpoint(resume)["history"])
        # The checkpoint is replaced as training goes on: resume from a copy.
        with tempfile.TemporaryDirectory(dir=out) as copy:
            _replace_dir(resume, Path(copy) / CHECKPOINT_DIR)
            run_training(spec, report=report, resume_checkpoint=Path(copy) / CHECKPOINT_DIR, device=device)
    else:
        run_training(spec, report=report, device=device)
    return history


def _train_on_ray(spec, out: Path, workers: int, gpus_per_worker: float, *, resume: bool) -> list[dict[str, Any]]:
    if not resume:
        # Ray Train restores a run folder of the same name by itself: clear it for a fresh run.
        shutil.rmtree(out / RAY_DIR / RAY_RUN_NAME, ignore_errors=True)
    joining = bool(os.environ.get("RAY_ADDRESS"))
    if not joining:
        # A local Ray started here listens on loopback only (read by Ray at import).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    from heartbeatai.metric_names import metric_mode
    from heartbeatai.training.ray_train import fit_with_ray_train

    if joining:
        ray.init()  # RAY_ADDRESS
    else:
        ray.init(address="local", include_dashboard=False)  # never a stale recorded head
    try:
        result = fit_with_ray_train(spec, workers=workers, gpus_per_worker=gpus_per_worker,
                                    storage_path=(out / RAY_DIR).resolve(), name=RAY_RUN_NAME)
        if result.error is not None:
            raise UserError(f"training failed: {result.error}")
        from heartbeatai.training.checkpoint import load_checkpoint

        best = result.get_best_checkpoint(spec.selection_metric, metric_mode(spec.selection_metric))
        best = best or result.checkpoint
        with result.checkpoint.as_directory() as latest:
            _replace_dir(Path(latest), out / CHECKPOINT_DIR)
        # Ray's Result keeps metrics of retained checkpoints only; the checkpoint has them all.
        history = list(load_checkpoint(out / CHECKPOINT_DIR)["history"])
        with best.as_directory() as best_dir:
            _replace_dir(Path(best_dir), out / BEST_CHECKPOINT_DIR)
        return history
    finally:
        ray.shutdown()


def _replace_dir(source: Path, target: Path) -> None:
    """Copy `source` over `target` so that `target` is never half-written."""
    staging = target.with_name(f".{target.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    old = target.with_name(f".{target.name}.old")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def best_epoch(history: list[dict[str, Any]], selection_metric: str) -> dict[str, Any]:
    """The epoch best by the metric (the earliest on ties); the last if none scored."""
    from heartbeatai.metric_names import metric_mode

    scored = [m for m in history if math.isfinite(m.get(selection_metric, math.nan))]
    if not scored:
        return history[-1] if history else {}
    pick = max if metric_mode(selection_metric) == "max" else min
    return pick(scored, key=lambda m: m[selection_metric])


def _write_metrics(out: Path, history: list[dict[str, Any]], selection_metric: str) -> dict[str, Any]:
    summary = {"selection_metric": selection_metric, "epochs": history,
               "final": history[-1] if history else {}, "best": best_epoch(history, selection_metric)}
    tmp = out / ".metrics.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, default=float), encoding="utf-8")
    os.replace(tmp, out / "metrics.json")
    return summary


# --------------------------------------------------------------------------- evaluate


def _split_records(data: Path, fold: str, split: str) -> tuple[list[str], str]:
    """The record ids of one split of one fold of the dataset's written plan, and how to name them."""
    from heartbeatai.data.folds import fold_records, read_folds
    from heartbeatai.protocols import fold_protocol

    try:
        plan, _ = read_folds(data, fold_protocol(fold))
        ids = fold_records(plan, fold)[split]
    except (FileNotFoundError, KeyError, ValueError) as err:
        raise UserError(str(err).strip('"')) from None
    if not ids:
        raise UserError(f"{fold} has no {split} records in {data}")
    return ids, f"{split} records of {fold}"


def evaluate_command(args: argparse.Namespace) -> int:
    import torch

    apply_threads(args.threads)
    from heartbeatai.metrics import evaluate_predictions
    from heartbeatai.training.checkpoint import CheckpointError
    from heartbeatai.training.predict import load_trained_model, predict

    try:
        run = RunFile.load(args.run)
    except ConfigError as err:
        raise UserError(str(err)) from None
    try:  # the whole model, so a foreign config or weights are one line here, not a traceback later
        state = load_trained_model(args.checkpoint, torch.device("cpu")).state
    except CheckpointError as err:
        raise UserError(str(err)) from None
    classes = list(state["classes"])
    if run.classes is not None and classes != list(run.classes):
        raise UserError(f"checkpoint classes {classes} differ from the run file's {list(run.classes)}")
    dataset = run_inputs.open_prepared(args.data)
    missing = [c for c in classes if c not in dataset.classes]
    if missing:
        raise UserError(f"classes {missing} are not in {dataset.path}")
    if int(dataset.fs) != int(state["fs"]):
        raise UserError(f"{dataset.path} is prepared at {dataset.fs} Hz, the model was trained at {state['fs']} Hz")

    record_ids = dataset.records["record_id"].astype(str).tolist()
    what = "records"
    if args.fold is not None or args.split is not None:
        record_ids, what = _split_records(dataset.path, args.fold or run.fold_id, args.split or "test")
    print(f"evaluating {args.checkpoint} on {len(record_ids)} {what} of {dataset.path}", flush=True)
    record_ids, probs, thresholds = predict(args.checkpoint, dataset.path, record_ids, batch_size=args.batch_size)
    labels = dataset.labels(classes)[dataset.index_of(record_ids)]
    result = evaluate_predictions(labels, probs, thresholds, classes)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    result.per_class.to_csv(out / "class_metrics.csv", index=False)
    predictions = {"record_id": record_ids,
                   "domain": dataset.records["domain"].astype(str).to_numpy()[dataset.index_of(record_ids)].tolist()}
    for c, name in enumerate(classes):
        predictions[f"p_{name}"] = probs[:, c]
        predictions[f"y_{name}"] = labels[:, c]
    import pandas as pd

    pd.DataFrame(predictions).to_parquet(out / "predictions.parquet", index=False)
    # Paths relative to OUT: no written file names a path of the machine it was made on.
    summary = {"checkpoint": os.path.relpath(Path(args.checkpoint).resolve(), out.resolve()),
               "data": os.path.relpath(Path(dataset.path).resolve(), out.resolve()),
               "data_fingerprint": dataset.fingerprint,
               "records": len(record_ids), "fold_id": args.fold or (run.fold_id if args.split else None),
               "split": args.split or ("test" if args.fold else None), **result.macro}
    (out / "metrics.json").write_text(json.dumps(summary, indent=1, default=float), encoding="utf-8")
    macro = result.macro
    print(f"macro AUROC {macro['macro_auroc']:.4f}  macro F1 {macro['macro_f1']:.4f}  "
          f"macro AUPRC {macro['macro_auprc']:.4f}  challenge score {macro['challenge_score']:.4f}  "
          f"over {len(macro['classes_used'])} present classes; written to {out}", flush=True)
    return 0
