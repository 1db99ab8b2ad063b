"""What `heartbeatai train` checks and settles before it trains: the effective run file, its
dataset and fold, its classes, and the output folder (training/cli.py runs it).

Every problem here is one line (UserError) and nothing is written before they are all
checked: an existing run in --out is kept unless --resume continues it or --force
replaces it.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from heartbeatai.cli import UserError
from heartbeatai.config import ConfigError
from heartbeatai.run_file import RunFile

# What a run writes under --out (training/cli.py) once it trains: --force removes exactly these.
# run.yaml alone is no run (it may be the run file given), and every run rewrites it.
RUN_OUTPUTS = ("metrics.json", "checkpoint", "best_checkpoint", "ray", ".staging")


def effective_run_file(args: argparse.Namespace) -> RunFile:
    """The run file with the command line's overrides; --data resolved against this directory."""
    try:
        run = RunFile.load(args.config)
        if args.data is not None:
            run = run.with_fields(data={"path": str(Path(args.data).resolve()), "fingerprint": run.data.fingerprint})
        run = run.with_fields(fold_id=args.fold, selection_metric=args.selection_metric)
        if args.epochs is not None:
            run = run.with_fields(trial=run.trial.with_overrides({"optim.epochs": args.epochs}))
    except ConfigError as err:
        raise UserError(str(err)) from None
    if run.data.path is None:
        raise UserError("the run file names a synthetic benchmark, not a prepared dataset: "
                        "write it with `heartbeatai synth`, prepare it, and pass --data")
    return run


def open_prepared(path: Path):
    from heartbeatai.data.prepared import NotPreparedError, PreparedDataset

    try:
        return PreparedDataset(path)
    except NotPreparedError as err:
        raise UserError(str(err)) from None


def check_data(run: RunFile, dataset, *, allow_other: bool) -> None:
    expected = run.data.fingerprint or run.provenance.dataset_fingerprint
    if expected and expected != dataset.fingerprint and not allow_other:
        raise UserError(f"{dataset.path} has fingerprint {dataset.fingerprint}, the run file was made on "
                        f"{expected}; pass --allow-other-data to train on it anyway")
    missing = [c for c in run.classes or () if c not in dataset.classes]
    if missing:
        raise UserError(f"classes {missing} are not in {dataset.path} (it has {', '.join(dataset.classes)})")


def folds_file(dataset_dir: Path, protocol: str, fold_id: str) -> Path:
    from heartbeatai.data.folds import fold_ids, folds_path

    path = folds_path(dataset_dir, protocol)
    if not path.is_file():
        raise UserError(f"no {protocol} folds in {dataset_dir}: run `heartbeatai data folds {dataset_dir} "
                        f"--protocol {protocol}` first")
    known = fold_ids(dataset_dir, protocol)
    if fold_id not in known:
        raise UserError(f"no fold {fold_id} in {path}; it has {', '.join(known)}")
    return path


def classes_with_positives(dataset, fold_id: str) -> list[str]:
    """The dataset's classes with at least one positive record in the fold's training split."""
    from heartbeatai.data.folds import fold_records, read_folds
    from heartbeatai.protocols import fold_protocol

    table, _ = read_folds(dataset.path, fold_protocol(fold_id))
    train = fold_records(table, fold_id)["train"]
    positives = dataset.labels(dataset.classes)[dataset.index_of(train)].sum(axis=0)
    return [name for name, count in zip(dataset.classes, positives) if count > 0]


def settle_classes(run: RunFile, dataset) -> RunFile:
    """A run file naming no classes takes those with positives in its fold's training split, and says so."""
    if run.classes is not None:
        return run
    classes = classes_with_positives(dataset, run.fold_id)
    if not classes:
        raise UserError(f"classes: the run file names none and no class has a positive in {run.fold_id}'s "
                        f"training split of {dataset.path}")
    print(f"classes: the run file names none; taking the {len(classes)} with positives in {run.fold_id}'s "
          f"training split: {', '.join(classes)}", flush=True)
    return run.model_copy(update={"classes": tuple(classes)})


def claim_out_dir(out: Path, *, resume: bool, force: bool) -> list[Path]:
    """--out must not hold a run unless --resume continues it or --force replaces it; returns
    what --force replaces (removed by `clear`, once every other check has passed)."""
    if resume and force:
        raise UserError("--resume and --force: give one (continue the run in OUT, or replace it)")
    held = [out / name for name in RUN_OUTPUTS if (out / name).exists()]
    if held and not resume and not force:
        raise UserError(f"--out {out} holds a run already ({', '.join(p.name for p in held)}): "
                        "--resume continues it, --force replaces it")
    return [] if resume else held


def clear(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def local_device(gpus: float):
    import torch

    if not gpus:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("--gpus-per-worker: this machine has no CUDA GPU visible to torch")
    return torch.device("cuda")
