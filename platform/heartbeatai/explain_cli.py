"""`heartbeatai explain`: attribute one record's predicted classes to leads and time.

The whole record is attributed, preprocessed as in training (the network is fully
convolutional up to global pooling, so any length works). Classes attributed: those
given with --classes, else those called positive at the checkpoint's thresholds, else
the most probable one. Writes under --out:

    <record>.npz            signal, attributions (K, 12, T), classes, probabilities,
                            thresholds, fs, method, SE gates per stage
    <record>_<CLASS>.html   the 12-lead figure with the attribution behind it
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from heartbeatai.cli import UserError
from heartbeatai.training.threads import add_threads_argument, apply_threads


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("explain", help="attribute one record's prediction to leads and time",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, metavar="CKPT")
    parser.add_argument("--data", required=True, type=Path, metavar="DIR", help="prepared dataset holding the record")
    parser.add_argument("--record", required=True, metavar="ID")
    parser.add_argument("--method", choices=("integrated_gradients", "gradcam"), default="integrated_gradients")
    parser.add_argument("--classes", help="comma-separated class abbreviations to attribute (default: predicted)")
    parser.add_argument("--steps", type=int, default=50, help="Integrated Gradients steps (default 50)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    add_threads_argument(parser)
    parser.set_defaults(func=explain_command)


def explain_command(args: argparse.Namespace) -> int:
    import torch

    from heartbeatai.data.prepared import NotPreparedError, PreparedDataset
    from heartbeatai.ecg import LEADS
    from heartbeatai.explain import attribute, attribution_figure
    from heartbeatai.training.batches import read_window
    from heartbeatai.training.factory import signal_transform
    from heartbeatai.training.checkpoint import CheckpointError
    from heartbeatai.training.predict import load_trained_model

    apply_threads(args.threads)
    try:
        model, state, trial = load_trained_model(args.checkpoint, torch.device("cpu"))
    except CheckpointError as err:
        raise UserError(str(err)) from None
    try:
        dataset = PreparedDataset(args.data)
        row = int(dataset.index_of([args.record])[0])
    except NotPreparedError as err:
        raise UserError(str(err)) from None
    except KeyError as err:
        raise UserError(err.args[0]) from None
    if int(dataset.fs) != int(state["fs"]):
        raise UserError(f"{dataset.path} is prepared at {dataset.fs} Hz, the model was trained at {state['fs']} Hz")
    classes = list(state["classes"])
    thresholds = state["thresholds"].numpy()
    length = int(dataset.records["length"].iloc[row])
    signal = read_window(dataset, row, 0, length, signal_transform(trial, dataset.fs))
    demographics = dataset.demographics()[row] if trial.model.demographics else None

    with torch.no_grad():
        x = torch.from_numpy(signal)[None]
        demo = None if demographics is None else torch.from_numpy(demographics)[None]
        probabilities = torch.sigmoid(model(x, demo, None))[0].numpy()
    targets = _target_classes(args.classes, classes, probabilities, thresholds)
    print(f"{args.record}: attributing {', '.join(classes[k] for k in targets)} with {args.method}", flush=True)
    result = attribute(model, signal, targets, args.method, demographics, n_steps=args.steps)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / f"{args.record}.npz",
        signal=signal,
        attributions=result.values,
        lead_resolved=result.lead_resolved,
        classes=np.array([classes[k] for k in targets]),
        all_classes=np.array(classes),
        probabilities=result.probabilities,
        thresholds=thresholds,
        fs=dataset.fs,
        method=args.method,
        **{f"se_gates_stage{stage}": gates for stage, gates in result.se_gates.items()},
    )
    for position, k in enumerate(targets):
        figure = attribution_figure(
            signal, result, dataset.fs, LEADS, class_position=position,
            title=f"{args.record}: {classes[k]} (p = {probabilities[k]:.2f}), {args.method}",
        )
        # plotly.js embedded: the figure opens offline, as on a hospital workstation.
        figure.write_html(out / f"{args.record}_{classes[k]}.html")
    print(f"written {out / (args.record + '.npz')} and {len(targets)} figure(s)", flush=True)
    return 0


def _target_classes(requested: str | None, classes: list[str], probabilities, thresholds) -> list[int]:
    if requested:
        names = [c.strip() for c in requested.split(",") if c.strip()]
        unknown = [c for c in names if c not in classes]
        if unknown:
            raise UserError(f"--classes {unknown} not among the model's classes {classes}")
        return [classes.index(c) for c in names]
    called = np.flatnonzero(probabilities >= thresholds).tolist()
    return called or [int(np.argmax(probabilities))]
