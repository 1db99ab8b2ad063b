"""The GPU check: one short script for the first machine with a GPU (issues 22 and 26).

`python -m benchmarks gpu [--budget-s 420]` prints, on the machine's own GPU(s):

1. the device, and the peak FLOP/s measured there (a matmul and a conv1d of the model's shapes,
   fp32 and bf16: the machine's own reference);
2. the reference model's training step (batch 64 x 12 x 5,000) in fp32 and under bf16
   autocast: samples/s and model FLOP utilisation against the measured peak;
3. the loader: random 10 s windows/s from a prepared 500 Hz dataset, against what the faster
   step consumes;
4. training through `heartbeatai train`: 1 worker on the GPU, and with 2+ GPUs 2 workers under
   NCCL DDP on Ray; each run's set-up time (wall time less its epochs) beside its epochs;
5. a three-trial ASHA study in this process's Ray, after which every GPU and CPU is available
   again and no placement group is left (Ray #54305);
6. bf16 against fp32: validation macro AUROC of `train --precision bf16` and `--precision fp32`
   over 3 seeds, the means within 0.01 (the bar for leaving bf16 on).

Where there is no CUDA device it says so in one line and exits 0. `--cpu-dry-run` runs every
section on the CPU at a tiny size (gloo for DDP), so the script is known to work before a GPU
is lent. Each section that fails prints one line and the next runs; sections that would start
past the budget are skipped with a line.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

BUDGET_S = 420


class Check:
    """The run's sections: each timed, each failure one line, nothing started past the budget."""

    def __init__(self, budget_s: float) -> None:
        self.started, self.budget_s, self.failed = time.perf_counter(), budget_s, []

    def section(self, title: str, run) -> None:
        spent = time.perf_counter() - self.started
        if spent > self.budget_s:
            print(f"\n{title}: skipped, {spent:.0f} s spent of the {self.budget_s:.0f} s budget", flush=True)
            return
        print(f"\n{title} [{spent:.0f} s]", flush=True)
        try:
            run()
        except Exception as err:  # noqa: BLE001 - one line per section; the next still runs
            self.failed.append(title)
            print(f"   FAILED: {type(err).__name__}: {str(err).strip().splitlines()[-1] if str(err).strip() else ''}")


def trial_settings(dry_run: bool) -> dict:
    """The trained network: the paper-size default on a GPU, a tiny one for the dry run."""
    if dry_run:
        return {"model": {"stem_width": 8, "widths": [8, 16], "depths": [1, 1], "concentration_stages": [1]},
                "mixstyle": {"layers": [1]}, "preprocess": {"crop_seconds": 4.0, "eval_stride_seconds": 4.0},
                "optim": {"epochs": 2, "batch_size": 16}}
    return {"optim": {"epochs": 3, "batch_size": 64}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help=f"time budget (default {BUDGET_S} s)")
    parser.add_argument("--cpu-dry-run", action="store_true", help="every section on the CPU at a tiny size")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not args.cpu_dry_run:
        print(f"gpu check skipped: no CUDA device here (torch {torch.__version__}, CUDA build "
              f"{torch.version.cuda or 'none'}); --cpu-dry-run runs it on the CPU at a tiny size")
        return 0
    from benchmarks import bench_model, precision_check

    dry = args.cpu_dry_run
    device = "cpu" if dry else "cuda"
    gpus = 0 if dry else torch.cuda.device_count()
    check = Check(args.budget_s)
    shape = argparse.Namespace(batch=8 if dry else 64, length=1000 if dry else 5000, classes=26, stem_kernel=15,
                               kernel=7, threads=os.cpu_count() or 1, model_arguments=None)
    found: dict = {}
    scratch = Path(tempfile.mkdtemp(prefix="bench-gpu-"))

    def device_and_peaks() -> None:
        name = "CPU (dry run)" if dry else f"{torch.cuda.get_device_name()} x {gpus}"
        print(f"   {name}; torch {torch.__version__}, CUDA {torch.version.cuda}, NCCL "
              f"{'.'.join(map(str, torch.cuda.nccl.version())) if not dry else 'n/a'}")
        # bf16 peaks on a CPU without native bf16 take minutes and mean nothing: fp32 only there.
        found["peaks"] = bench_model.measure_peaks(device, [shape.threads], bf16=bench_model.native_bf16(device))
        for (dtype, _), rates in found["peaks"].items():
            print(f"   peak {str(dtype).removeprefix('torch.')}: "
                  + ", ".join(f"{k} {v / 1e9:,.0f} GFLOP/s" for k, v in rates.items()))

    def training_step() -> None:
        model = bench_model.reference_model(shape)
        per_sample = bench_model.training_step_flops(model, shape.batch, shape.length) / shape.batch
        steps = {precision: bench_model.TrainingStep(bench_model.reference_model(shape), batch=shape.batch,
                                                      length=shape.length, n_classes=shape.classes,
                                                      bf16=precision == "bf16", device=device)
                 for precision in ("fp32", "bf16")}
        results = bench_model.interleaved_throughput(steps, 2 if dry else 5)
        for precision, result in results.items():
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            peak = max(found.get("peaks", {}).get((dtype, shape.threads), {"none": float("nan")}).values())
            share = (f"model FLOP utilisation {per_sample * result['samples_per_s'] / peak:.1%} of the measured peak"
                     if peak == peak else "no peak measured for this precision")
            print(f"   {precision}: {result['samples_per_s']:8.1f} samples/s, {share}")
        found["demand"] = max(r["samples_per_s"] for r in results.values())

    def data_and_loader() -> None:
        from benchmarks.bench_data import bench_windows
        from heartbeatai.data.prepared import PreparedDataset

        found["data"] = precision_check.prepared_data(scratch / "data", 80 if dry else 400, 10.0)
        clock = bench_windows(PreparedDataset(found["data"]), 2000 if dry else 20000)
        rate = (2000 if dry else 20000) / clock.wall
        demand = found.get("demand", float("nan"))
        print(f"   {rate:,.0f} windows/s from one process against {demand:,.0f} samples/s the faster step takes: "
              f"{rate / demand:.1f}x" if demand == demand else f"   {rate:,.0f} windows/s from one process")

    def ddp() -> None:
        config = precision_check.run_file(found["data"], scratch, trial_settings(dry))
        for workers in (1, 2) if dry or gpus >= 2 else (1,):
            result = precision_check.train(config, scratch / f"ddp-{workers}", workers, 0 if dry else 1)
            setup = result["wall"] - sum(result["epochs"])
            backend = "in process" if workers == 1 else ("gloo" if dry else "NCCL") + " DDP on Ray"
            print(f"   {workers} worker(s), {backend}: set-up {setup:.1f} s, epochs "
                  + ", ".join(f"{s:.1f}" for s in result["epochs"]) + " s")
        if not dry and gpus < 2:
            print("   2-worker NCCL DDP: skipped, one GPU")

    def asha_study() -> None:
        import ray

        from heartbeatai.results import ResultsStore
        from heartbeatai.study.study_config import parse_study_config
        from heartbeatai.study.study_run import start_study

        config = parse_study_config({
            "name": "gpu-check", "data": {"path": str(found["data"])}, "folds": {"domains": ["cpsc"]},
            "trial": trial_settings(dry), "search": {"trials_per_fold": 3},
            "scheduler": {"kind": "asha", "grace_period": 1, "reduction_factor": 3},
            "arms": ["full"], "seeds": [1], "record_views": 0, "analysis": {"bootstrap": 20},
            "resources": {"workers": 1, "gpus_per_worker": 0 if dry else 1}})
        ray.init(address="local", num_gpus=gpus, log_to_driver=False)
        try:
            study = start_study(config, str(scratch / "runs"), progress=lambda line: None)
            trials = ResultsStore(str(study.parent)).read(study.name, "trials")
            stopped = int((trials["status"] == "early_stopped").sum())
            time.sleep(2)  # Ray returns resources asynchronously after the last trial
            total, free = ray.cluster_resources(), ray.available_resources()
            groups = [g for g in ray.util.placement_group_table().values() if g["state"] != "REMOVED"]
            returned = all(free.get(k, 0) >= total[k] - 1e-6 for k in ("CPU", "GPU") if k in total)
            print(f"   {len(trials)} trials, {stopped} stopped by ASHA; after the study: "
                  f"{'every CPU and GPU available' if returned else f'NOT returned: {free} of {total}'}, "
                  f"{len(groups)} placement group(s) left")
            if not returned or groups:
                raise RuntimeError("resources not returned after the study")
        finally:
            ray.shutdown()

    def bf16_accuracy() -> None:
        precision_check.bf16_against_fp32(found["data"], scratch, trial_settings(dry), 0 if dry else 1)

    check.section("1. device and measured peaks", device_and_peaks)
    check.section("2. training step, fp32 and bf16 autocast", training_step)
    check.section("3. prepared data and the loader", data_and_loader)
    check.section("4. heartbeatai train: 1 worker, 2-worker DDP", ddp)
    check.section("5. a three-trial ASHA study: resources returned", asha_study)
    check.section("6. bf16 against fp32, validation macro AUROC", bf16_accuracy)
    spent = time.perf_counter() - check.started
    print(f"\ngpu check: {spent:.0f} s; " + (f"FAILED: {', '.join(check.failed)}" if check.failed else "every section ran"))
    return 1 if check.failed else 0
