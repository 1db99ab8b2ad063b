"""Training algorithms against ERM: what each costs, and (--study) what each buys on LODO.

    python -m benchmarks dg [--quick] [--rounds 5] [--batches 8] [--batch 32] [--length 500] [--threads 1]
                            [--device cpu|cuda]
    python -m benchmarks dg --study [--quick] [--storage DIR]

1. Cost, for every algorithm the registry holds (heartbeatai.training.algorithms), measured
   in this one process on the same tiny network and the same batches (12 leads, three
   training domains, multi-hot labels a tone on the first leads makes learnable): the
   seconds of one training epoch (`Algorithm.update` over every batch: its forward passes,
   penalties, extra modules and optimiser step), and the peak memory of building the
   algorithm and running that epoch. Epochs are timed round after round, every algorithm in
   turn, each keeping its fastest: on shared cores the neighbours' load then falls on all
   alike. Each algorithm runs with its declared defaults; a phase that starts late (V-REx's
   full penalty after its anneal steps, an average taken after some epochs) costs what its
   code costs from the first step, not what the late phase adds. Peak memory: on CUDA,
   torch's allocator peak; on CPU, the rise of the process's resident high-water mark
   (Linux: reset through /proc/self/clear_refs, freed heap returned by malloc_trim first),
   each algorithm built afresh and measured alone, so figures include the algorithm's own
   state (an averaged copy, a discriminator) and its step's activations.
2. `--study`: runs studies/configs/dg_zoo.yaml (`--quick`: the QUICK overrides below, minutes
   on 2 cores) on Ray and prints, per algorithm arm, its difference from ERM (`full`) in LODO
   macro AUROC and macro F1, across the held-out domains and per domain, with the intervals,
   claims and decisions of the store's ablation_tests (docs/analysis.md).

The registry is read when the benchmark runs, so an algorithm registered tomorrow is in
tomorrow's table.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ZOO_CONFIG = REPO / "studies" / "configs" / "dg_zoo.yaml"
N_CLASSES, N_DOMAINS, FS = 6, 3, 100
TINY = {"model.stem_width": 8, "model.widths": [8, 16, 32], "model.depths": [1, 1, 1], "model.stem_kernel": 7,
        "model.kernel": 5, "model.concentration_stages": [1, 2], "mixstyle.p": 0.0, "label_smoothing": 0.0,
        "optim.lr": 0.005, "loss.kind": "bce"}  # the zoo's loss: Mixup's mixed targets refuse focal and ASL
# `--study --quick`: the zoo's config, small enough for a laptop (dotted keys of the study config).
QUICK = {
    "name": "dg_zoo_quick",
    "data.synthetic.records": 180,
    "data.synthetic.domains": ["cpsc", "ptbxl", "georgia"],
    "trial.model": {"stem_width": 8, "widths": [8, 16, 32], "depths": [1, 1, 1], "stem_kernel": 7, "kernel": 5,
                    "se_reduction": 4, "concentration_stages": [1, 2]},
    "trial.preprocess": {"crop_seconds": 3.0, "eval_stride_seconds": 1.5},
    "trial.optim": {"lr": 0.01, "epochs": 2, "batch_size": 16},
    "search.trials_per_fold": 2,
    "scheduler.grace_period": 1,
    "seeds": [1, 2],
    "analysis.bootstrap": 100,
}
COMPARED_METRICS = ("macro_auroc", "macro_f1")


# --- 1. cost ---------------------------------------------------------------------------


def toy_batches(n_batches: int, batch: int, length: int, device: str, seed: int = 0) -> list[dict]:
    """Class c is present when lead c carries a 5 Hz tone; each domain has its own noise level."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    batches = []
    tone = np.sin(2 * np.pi * 5 * np.arange(length) / FS)
    for _ in range(n_batches):
        y = (rng.random((batch, N_CLASSES)) < 0.3).astype(np.float32)
        domain = rng.integers(0, N_DOMAINS, batch)
        x = rng.normal(0, 1, (batch, 12, length)) * (1 + 0.5 * domain)[:, None, None]
        x[:, :N_CLASSES, :] += 2 * y[:, :, None] * tone
        batches.append({"x": torch.tensor(x, dtype=torch.float32, device=device),
                        "y": torch.from_numpy(y).to(device), "domain": torch.from_numpy(domain).to(device)})
    return batches


def zoo_overrides(kind: str) -> dict:
    """The base an algorithm arm of dg_zoo.yaml moves to (`algorithm_arms.<kind>.overrides`):
    MixStyle's arm turns the network's MixStyle on, which TINY, like the zoo's ERM, leaves off."""
    import yaml

    arms = yaml.safe_load(ZOO_CONFIG.read_text()).get("algorithm_arms") or {}
    return dict((arms.get(kind) or {}).get("overrides") or {})


def build_algorithm(kind: str, steps_per_epoch: int, device: str):
    import numpy as np
    import torch

    from heartbeatai.config import TrialConfig
    from heartbeatai.training.factory import algorithm_from_config, loss_from_config, model_from_config

    trial = TrialConfig().with_overrides({**TINY, **zoo_overrides(kind), "algorithm.kind": kind, "optim.epochs": 1000})
    torch.manual_seed(0)
    model = model_from_config(trial, N_CLASSES).to(device)
    loss = loss_from_config(trial, np.zeros((4, N_CLASSES), np.float32)).to(device)
    return algorithm_from_config(trial, model, model, loss, steps_per_epoch=steps_per_epoch, n_domains=N_DOMAINS,
                                 device=torch.device(device))


def run_epoch(algorithm, batches: list[dict], device: str) -> float:
    import torch

    algorithm.train()
    start = time.perf_counter()
    for batch in batches:
        algorithm.update(batch)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def epoch_seconds(kinds: list[str], batches: list[dict], rounds: int, device: str) -> dict[str, float]:
    """One warm-up epoch each, then `rounds` rounds of one epoch per algorithm in turn; the fastest counts."""
    algorithms = {kind: build_algorithm(kind, len(batches), device) for kind in kinds}
    best = {}
    for kind, algorithm in algorithms.items():
        print(f"  warmed up {kind}: {run_epoch(algorithm, batches, device):.2f} s", file=sys.stderr, flush=True)
        best[kind] = float("inf")
    for round_number in range(rounds):
        for kind, algorithm in algorithms.items():
            best[kind] = min(best[kind], run_epoch(algorithm, batches, device))
        print(f"  round {round_number + 1}/{rounds} done", file=sys.stderr, flush=True)
    return best


def _resident_kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


def peak_bytes(kind: str, batches: list[dict], device: str) -> float | None:
    """The memory building `kind` and one epoch of it need on top of what the process held before."""
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        algorithm = build_algorithm(kind, len(batches), device)
        run_epoch(algorithm, batches, device)
        peak = torch.cuda.max_memory_allocated() - before
    else:
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed heap back to the system: the mark starts low
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            before = _resident_kib("VmRSS")
        except OSError:
            return None
        algorithm = build_algorithm(kind, len(batches), device)
        run_epoch(algorithm, batches, device)
        peak = (_resident_kib("VmHWM") - before) * 1024
    del algorithm
    gc.collect()
    return float(peak)


def cost_table(args: argparse.Namespace) -> int:
    import torch

    from benchmarks.bench_model import cpu_name
    from heartbeatai.training.algorithms import ALGORITHMS, DEFAULT_ALGORITHM

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here")
        return 1
    torch.set_num_threads(args.threads)
    hardware = torch.cuda.get_device_name() if args.device == "cuda" else f"{cpu_name()}, {args.threads} threads"
    print(f"device: {hardware}; torch {torch.__version__}")
    if args.device == "cpu":
        print("note: these cores may be shared with other work, so figures are noisy (lower bounds)")
    kinds = [DEFAULT_ALGORITHM, *(k for k in ALGORITHMS if k != DEFAULT_ALGORITHM)]
    batches = toy_batches(args.batches, args.batch, args.length, args.device)
    print(f"one epoch = {args.batches} batches of {args.batch} x 12 x {args.length} ({N_DOMAINS} training domains, "
          f"{N_CLASSES} classes); network widths {TINY['model.widths']}; fastest of {args.rounds} interleaved rounds")
    seconds = epoch_seconds(kinds, batches, args.rounds, args.device)
    memory = {kind: peak_bytes(kind, batches, args.device) for kind in kinds}
    erm_s, erm_mem = seconds[DEFAULT_ALGORITHM], memory[DEFAULT_ALGORITHM]
    print(f"\n{'algorithm':14s} {'s/epoch':>9s} {'x ERM':>7s} {'peak MiB':>9s} {'x ERM':>7s}")
    for kind in kinds:
        mem = memory[kind]
        mem_text = (f"{mem / 2**20:9.1f} {mem / erm_mem:6.2f}x" if mem is not None and erm_mem
                    else f"{'n/a':>9s} {'':>7s}")
        print(f"{kind:14s} {seconds[kind]:9.3f} {seconds[kind] / erm_s:6.2f}x {mem_text}")
    if args.device == "cpu":
        print("peak MiB: rise of the resident high-water mark while the algorithm is built and runs one epoch")
    return 0


# --- 2. the zoo study ------------------------------------------------------------------


def _set_dotted(tree: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[leaf] = value


def zoo_config(storage: str, quick: bool):
    import yaml

    from heartbeatai.study.study_config import parse_study_config

    raw = yaml.safe_load(ZOO_CONFIG.read_text())
    for dotted, value in (QUICK.items() if quick else ()):
        _set_dotted(raw, dotted, value)
    raw["storage"] = storage
    return parse_study_config(raw, str(ZOO_CONFIG))


def comparison_lines(tests, metrics=COMPARED_METRICS) -> list[str]:
    """Per algorithm arm and metric: across domains, then per held-out domain, each against ERM."""
    from heartbeatai.arms import algorithm_of

    lines = []
    rows = tests[(tests["protocol"] == "lodo") & tests["arm"].map(algorithm_of).notna() & tests["metric"].isin(metrics)]
    for (arm, metric), own in rows.groupby(["arm", "metric"], sort=True):
        for _, row in own.sort_values("scope").iterrows():  # "across" before "fold"
            where = "across domains" if row["scope"] == "across" else row["fold_id"]
            interval = (f"[{row['diff_lo']:+.4f}, {row['diff_hi']:+.4f}]"
                        if row["diff_lo"] == row["diff_lo"] and row["diff_hi"] == row["diff_hi"] else "[no interval]")
            lines.append(f"{algorithm_of(arm):12s} {metric:12s} {where:18s} {row['diff']:+.4f} {interval}  "
                         f"{row['decision']} ({row['family']})")
    return lines


def run_study(args: argparse.Namespace) -> int:
    from heartbeatai.results import ResultsStore
    from heartbeatai.study.study_run import start_study

    with contextlib.ExitStack() as stack:
        storage = args.storage or stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-dg-"))
        config = zoo_config(storage, args.quick)
        print(f"study {config.name}: {len(config.algorithms)} algorithm(s) {config.algorithms}, "
              f"{config.search.trials_per_fold} search trials per algorithm and fold, seeds {config.seeds}, "
              f"under {storage}", flush=True)
        start = time.perf_counter()
        study_dir = start_study(config, progress=lambda line: print(f"  {line}", flush=True))
        print(f"study ran in {time.perf_counter() - start:.0f} s")
        tests = ResultsStore(str(study_dir.parent)).read(config.name, "ablation_tests")
        print("\nLODO, each algorithm minus ERM (`full`); positive = better than ERM; 95% interval; decision "
              "(family, Holm: docs/analysis.md)")
        lines = comparison_lines(tests)
        print("\n".join(lines) if lines else "no algorithm arm was compared (only ERM is registered?)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks dg", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds over the algorithms (after a warm-up)")
    parser.add_argument("--batches", type=int, default=8, help="batches per epoch")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=500, help="samples per lead (5 s at 100 Hz)")
    # One thread by default, as a one-CPU trial runs: on shared cores a tiny network's step is
    # several times slower with a thread per core (tests/study_fixtures.one_torch_thread).
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--study", action="store_true", help="also run studies/configs/dg_zoo.yaml and compare")
    parser.add_argument("--storage", help="where --study writes (default: a temporary folder, removed)")
    parser.add_argument("--quick", action="store_true", help="cost: 2 rounds of 4 batches; study: the QUICK overrides")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.batches = 2, 4
    status = cost_table(args)
    if args.study:
        status |= run_study(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
