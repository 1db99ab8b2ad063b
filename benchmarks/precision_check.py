"""bf16 autocast against fp32 at equal work: the bar a precision must pass to be a default (issue 22).

The same run file trained through `heartbeatai train --precision fp32` and `--precision bf16`
at each of 3 seeds; the mean validation macro AUROC of the two within ACCURACY_MARGIN, and
each one's mean epoch time beside it. `python -m benchmarks gpu` runs it on the GPU (section 6),
`python -m benchmarks model --accuracy` on a CPU with native bf16, on the demo's network.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from statistics import mean

import yaml

ACCURACY_MARGIN = 0.01
SEEDS = (1, 2, 3)
FOLD = "lodo:cpsc"


def cli(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "heartbeatai", *args], capture_output=True, text=True, timeout=900)
    if done.returncode:
        raise RuntimeError((done.stderr or done.stdout).strip().splitlines()[-1])
    return done


def prepared_data(folder: Path, records: int, seconds: float, fs: int = 500) -> Path:
    """A synthetic release of `records` records, prepared at `fs`, with its LODO folds."""
    cli("synth", "--out", str(folder / "raw"), "--records", str(records), "--fs", str(fs), "--seconds", str(seconds))
    cli("prepare", str(folder / "raw"), "--out", str(folder / "prep"), "--fs", str(fs), "--quiet")
    cli("data", "folds", str(folder / "prep"), "--protocol", "lodo")
    return folder / "prep"


def run_file(data: Path, folder: Path, trial: dict, seed: int = 0) -> Path:
    from heartbeatai.data.prepared import PreparedDataset

    path = folder / f"run-{seed}.yaml"
    path.write_text(yaml.safe_dump({"data": {"path": str(data), "fingerprint": PreparedDataset(data).fingerprint},
                                    "fold_id": FOLD, "trial": trial | {"seed": seed}}, sort_keys=False))
    return path


def train(config: Path, out: Path, workers: int, gpus: float, precision: str = "auto") -> dict:
    started = time.perf_counter()
    cli("train", "--config", str(config), "--out", str(out), "--workers", str(workers),
        "--gpus-per-worker", str(gpus), "--precision", precision)
    wall = time.perf_counter() - started
    metrics = json.loads((out / "metrics.json").read_text())
    epochs = [m.get("epoch_seconds", 0.0) for m in metrics["epochs"]]
    return {"wall": wall, "epochs": epochs, "best": metrics["best"]}


def bf16_against_fp32(data: Path, scratch: Path, trial: dict, gpus: float) -> dict:
    """Train at every seed in both precisions; print one line and return the figures."""
    auroc: dict[str, list[float]] = {}
    epoch_s: dict[str, list[float]] = {}
    for precision in ("fp32", "bf16"):
        for seed in SEEDS:
            result = train(run_file(data, scratch, trial, seed), scratch / f"{precision}-{seed}", 1, gpus, precision)
            auroc.setdefault(precision, []).append(result["best"]["val_macro_auroc"])
            epoch_s.setdefault(precision, []).extend(result["epochs"])
    means = {p: mean(v) for p, v in auroc.items()}
    gap = means["bf16"] - means["fp32"]
    within = abs(gap) <= ACCURACY_MARGIN
    seconds = {p: mean(v) for p, v in epoch_s.items()}
    print(f"   validation macro AUROC over seeds {SEEDS}: fp32 {means['fp32']:.4f}, bf16 {means['bf16']:.4f}; "
          f"bf16 - fp32 {gap:+.4f}, {'within' if within else 'OUTSIDE'} {ACCURACY_MARGIN}; "
          f"per epoch fp32 {seconds['fp32']:.2f} s, bf16 {seconds['bf16']:.2f} s "
          f"({seconds['fp32'] / seconds['bf16']:.2f}x)")
    return {"auroc": auroc, "gap": gap, "within": within, "epoch_seconds": seconds}
