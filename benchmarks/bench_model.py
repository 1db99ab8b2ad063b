"""Model speed: training-step throughput, FLOP utilisation, torch_ecg's SE-ResNet beside it.

    .venv/bin/python -m benchmarks model [--quick] [--steps 3] [--batch 64] [--length 5000] [--threads N]
                                         [--no-compile] [--no-torch-ecg] [--device cuda]
    .venv/bin/python -m benchmarks model --accuracy

`--accuracy` (a few minutes) times nothing above: it trains the demo's network
(studies/configs/demo.yaml's trial) on a 600-record synthetic release through
`heartbeatai train --precision fp32` and `bf16` at 3 seeds each, and prints the validation
macro AUROC of both and their epoch times (benchmarks/precision_check.py): the check
that decides whether bf16 autocast is the CPU default. Where the CPU lacks native bf16 it
says so in one line.

`--quick` (about a minute): batch 16 x 2,500 samples, 2 rounds, no torch.compile.
bf16 settings are timed only where the CPU computes bf16 natively (AVX512-BF16 or AMX
flags); elsewhere autocast emulates it, a step took 111 s against 10.9 s in fp32, and the
figure says nothing about bf16 on hardware that has it.

One plain training step (forward, BCE, backward, AdamW) of the reference model on
12 x length inputs is timed under each setting worth trying (bf16 autocast, fused AdamW,
threads, batch size, torch.compile). Its FLOPs come from
`torch.utils.flop_counter.FlopCounterMode` and the machine's peak from timed square
matmuls and convolutions, so utilisation = achieved / peak FLOP/s in the step's dtype
and thread count.

The settings are timed in turn, round after round, and each keeps its fastest step: on
shared cores the neighbours' load then falls on every setting alike instead of on
whichever ran during a busy minute.

torch_ecg's closest model (its ResNet backbone with basic SE blocks in the ResNet-18
layout, given our kernels; about the same parameter count) is timed in a separate venv
the benchmark creates, in one process with our model, the same step function and the
same interleaving: this file runs there on its own (`--worker torch_ecg`), which is why
heartbeatai is imported lazily. torch_ecg is not a platform dependency.

One module (over 400 lines) because it must run on its own inside torch_ecg's venv as
the `--worker`, with the same step function and timing loop as the main run.

Speed-ups are measured on one step; whether bf16 keeps accuracy is `--accuracy`'s check.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
LEADS = 12
DEFAULT_VENV = Path.home() / ".cache" / "heartbeatai" / "bench-torch-ecg-venv"


# --- the measured step -------------------------------------------------------------------


class TrainingStep:
    """One plain training step on a fixed random batch; calling it returns its seconds."""

    def __init__(
        self,
        model: nn.Module,
        *,
        batch: int,
        length: int,
        n_classes: int,
        bf16: bool = False,
        fused: bool = False,
        compile: bool = False,
        threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        self.batch = batch
        self.threads = threads
        self.device = device
        self.model = model.to(device).train()
        self.optimiser = torch.optim.AdamW(self.model.parameters(), lr=1e-3, fused=fused or None)
        self.forward = torch.compile(self.model) if compile else self.model
        self.loss_fn = nn.BCEWithLogitsLoss()
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(batch, LEADS, length, generator=generator).to(device)
        self.y = (torch.rand(batch, n_classes, generator=generator) < 0.1).float().to(device)
        self.bf16 = bf16

    def __call__(self) -> float:
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        autocast = torch.autocast(self.device, dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        start = time.perf_counter()
        self.optimiser.zero_grad(set_to_none=True)
        with autocast:
            logits = self.forward(self.x)
        self.loss_fn(logits.float(), self.y).backward()
        self.optimiser.step()
        if self.device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start


def interleaved_throughput(steps: dict[str, TrainingStep], rounds: int) -> dict[str, dict]:
    """One warm-up each, then `rounds` rounds timing every step in turn; the fastest counts."""
    results: dict[str, dict] = {}
    for name, step in steps.items():
        warmup_s = step()
        print(f"  warmed up {name}: {warmup_s:.1f} s", file=sys.stderr, flush=True)
        results[name] = {"warmup_s": warmup_s, "step_s": float("inf"), "batch": step.batch}
    for round_number in range(rounds):
        for name, step in steps.items():
            results[name]["step_s"] = min(results[name]["step_s"], step())
        print(f"  round {round_number + 1}/{rounds} done", file=sys.stderr, flush=True)
    for result in results.values():
        result["samples_per_s"] = result["batch"] / result["step_s"]
    return results


def torch_ecg_se_resnet(n_classes: int, stem_kernel: int, kernel: int) -> nn.Module:
    """torch_ecg's ResNet backbone with basic SE blocks, ResNet-18 layout, our kernels."""
    from copy import deepcopy

    from torch_ecg.model_configs import resnet_block_basic_se, resnet_vanilla_18
    from torch_ecg.models.cnn import ResNet

    config = deepcopy(resnet_vanilla_18)
    config.block = deepcopy(resnet_block_basic_se)
    config.filter_lengths = kernel
    config.stem.filter_lengths = stem_kernel
    backbone = ResNet(in_channels=LEADS, **config)
    width = backbone.compute_output_shape()[1]
    return nn.Sequential(backbone, nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(width, n_classes))


def reference_arguments(args: argparse.Namespace) -> dict:
    """build_model's arguments for the reference network (the trial config's defaults).

    MixStyle is off, as torch_ecg's model has none. The in-block dropout (0.2 by default)
    stays, as trained; `like_torch_ecg_arguments` drops it too for the like-with-like
    comparison (torch_ecg's basic SE block has none; it cost 11% of our step in the
    profile). The worker in torch_ecg's venv gets these as JSON (it has torch, not the
    platform's config stack).
    """
    if args.model_arguments:
        return json.loads(args.model_arguments)
    from heartbeatai.config import TrialConfig
    from heartbeatai.training.factory import model_arguments

    trial = TrialConfig().with_overrides(
        {"model.stem_kernel": args.stem_kernel, "model.kernel": args.kernel, "mixstyle.p": 0.0})
    return model_arguments(trial, args.classes)


def like_torch_ecg_arguments(arguments: dict) -> dict:
    return {**arguments, "dropout": 0.0}


def reference_model(args: argparse.Namespace, like_torch_ecg: bool = False) -> nn.Module:
    from heartbeatai.model import build_model

    torch.manual_seed(0)
    arguments = reference_arguments(args)
    return build_model(**(like_torch_ecg_arguments(arguments) if like_torch_ecg else arguments))


def native_bf16(device: str) -> bool:
    """Whether bf16 runs natively: always on CUDA; on CPU with the AVX512-BF16 or AMX-BF16 flags."""
    if device != "cpu":
        return True
    from heartbeatai.training.precision import native_bf16_cpu  # here: the torch_ecg worker has no heartbeatai

    return native_bf16_cpu()


def accuracy_check(device: str, emulated: bool = False) -> int:
    """bf16 autocast against fp32 on the demo's network, where `device` computes bf16 natively
    (or anywhere with `emulated`: the same rounding, so the accuracy holds, at 10x the time)."""
    import tempfile

    import yaml

    from benchmarks import precision_check

    if not native_bf16(device) and not emulated:
        print(f"bf16 accuracy check skipped: this {device} has no native bf16 (AVX512-BF16 or AMX), "
              "so fp32 stays the default here")
        return 0
    trial = yaml.safe_load((REPO / "studies" / "configs" / "demo.yaml").read_text())["trial"]
    scratch = Path(tempfile.mkdtemp(prefix="bench-precision-"))
    print(f"bf16 against fp32 on {cpu_name() if device == 'cpu' else device}: the demo's network, "
          f"{precision_check.FOLD}, 600 synthetic records at 100 Hz"
          + ("" if native_bf16(device) else "; bf16 EMULATED here: its epoch times are not bf16's speed"))
    data = precision_check.prepared_data(scratch / "data", 600, 10.0, fs=100)
    result = precision_check.bf16_against_fp32(data, scratch, trial, 0 if device == "cpu" else 1)
    return 0 if result["within"] else 1


def run_worker(args: argparse.Namespace) -> int:
    """Inside the torch_ecg venv: time torch_ecg's model and ours in turn, print one JSON line."""
    import torch_ecg

    sys.path.insert(0, str(REPO / "platform"))  # our model needs nothing but torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    theirs = torch_ecg_se_resnet(args.classes, args.stem_kernel, args.kernel)
    ours = reference_model(args)
    shape = dict(batch=args.batch, length=args.length, n_classes=args.classes)
    steps = {
        "torch_ecg fp32": TrainingStep(theirs, **shape),
        "ours fp32 (as trained, dropout)": TrainingStep(ours, **shape),
        "ours fp32 (no dropout, like theirs)": TrainingStep(reference_model(args, like_torch_ecg=True), **shape),
    }
    if native_bf16("cpu"):
        steps["ours bf16 autocast"] = TrainingStep(reference_model(args), bf16=True, **shape)
    results = interleaved_throughput(steps, args.steps)
    flops = {"torch_ecg": training_step_flops(theirs, 2, args.length) / 2,
             "ours": training_step_flops(ours, 2, args.length) / 2}
    print(json.dumps({"results": results, "params": {"torch_ecg": n_params(theirs), "ours": n_params(ours)},
                      "flops_per_sample": flops,
                      "torch": torch.__version__, "torch_ecg": torch_ecg.__version__}))
    return 0


# --- machine and model figures -------------------------------------------------------


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _best_rate(kernel, flops: float, device: str, seconds: float) -> float:
    """Best FLOP/s of repeated `kernel()` calls over about `seconds`."""
    def timed() -> float:
        start = time.perf_counter()
        kernel()
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    timed()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        best = max(best, flops / timed())
    return best


def peak_flops(dtype: torch.dtype, device: str, seconds: float = 2.0) -> dict[str, float]:
    """Measured peak FLOP/s of two dense kernels: a square matmul and a conv1d of our shapes.

    Both count: this torch build's fp32 matmul goes to MKL, which on AMD CPUs runs at
    about half the rate oneDNN's convolutions reach, so the matmul alone would
    understate the machine (and put the model above 100 % utilisation).
    """
    n = 2048
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    batch, channels, length, kernel = 16, 512, 1024, 7
    x = torch.randn(batch, channels, length, device=device).to(dtype)
    w = torch.randn(channels, channels, kernel, device=device).to(dtype)
    return {
        "matmul": _best_rate(lambda: torch.mm(a, b), 2 * n**3, device, seconds),
        "conv1d": _best_rate(lambda: torch.nn.functional.conv1d(x, w, padding=kernel // 2),
                             2 * batch * channels * channels * kernel * length, device, seconds),
    }


def measure_peaks(device: str, thread_counts: list[int], into: dict | None = None, bf16: bool = True) -> dict:
    """(dtype, threads) -> {kernel: best FLOP/s}, keeping the best of earlier measurements `into`."""
    peaks = {key: dict(value) for key, value in (into or {}).items()}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for dtype in (torch.float32, torch.bfloat16) if bf16 else (torch.float32,):
            rates = peaks.setdefault((dtype, threads), {})
            for kernel, rate in peak_flops(dtype, device).items():
                rates[kernel] = max(rates.get(kernel, 0.0), rate)
    return peaks


def training_step_flops(model: nn.Module, batch: int, length: int) -> float:
    """FLOPs of forward + backward for `batch` samples (counted on 2, scaled: convs are linear in batch)."""
    from torch.utils.flop_counter import FlopCounterMode

    counted = 2
    model = model.train()
    x = torch.randn(counted, LEADS, length)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() * batch / counted


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


# --- torch_ecg venv --------------------------------------------------------------------


def ensure_torch_ecg_venv(venv: Path) -> Path | None:
    """The venv's python, creating and installing it on first use; None (and why) on failure."""
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([python, "-c", "import torch_ecg"], capture_output=True).returncode == 0:
        return python
    print(f"creating {venv} and installing torch-ecg (first run only; a few minutes)", flush=True)
    # Only torch and numpy are pinned from our constraints: the same CPU torch build is
    # what the comparison needs, and torch_ecg's own requirements contradict other pins
    # (pandas < 3; python-dateutil < 3 through boto3), on which pip backtracks for over
    # 15 minutes without an answer.
    constraints = Path(tempfile.mkstemp(prefix="constraints-", suffix=".txt")[1])
    constraints.write_text(
        "".join(line for line in (REPO / "constraints.txt").read_text().splitlines(keepends=True)
                if line.startswith(("torch==", "numpy==")))
    )
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "-c", str(constraints), "torch-ecg"],
                       check=True, timeout=1800, capture_output=True, text=True)
    except subprocess.CalledProcessError as error:
        reason = (error.stderr or "").strip().splitlines()[-1:] or [str(error)]
        print(f"torch-ecg could not be installed: {reason[0]}")
        return None
    except subprocess.TimeoutExpired:
        print("torch-ecg could not be installed: pip ran past 30 minutes")
        return None
    finally:
        constraints.unlink(missing_ok=True)
    return python


def compare_torch_ecg(args: argparse.Namespace) -> None:
    print("\ntorch_ecg beside ours: same step, same inputs, one process in a separate venv", flush=True)
    python = ensure_torch_ecg_venv(Path(args.torch_ecg_venv))
    if python is None:
        return
    command = [str(python), __file__, "--worker", "torch_ecg", "--threads", str(args.threads),
               "--batch", str(args.batch), "--length", str(args.length), "--steps", str(args.steps),
               "--classes", str(args.classes), "--stem-kernel", str(args.stem_kernel), "--kernel", str(args.kernel),
               "--model-arguments", json.dumps(reference_arguments(args))]
    # Progress lines pass through as they come; torch_ecg's import-time warnings do not.
    other_output = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as worker:
        for line in worker.stderr:
            if line.startswith(("  warmed up", "  round")):
                print(line, end="", flush=True)
            else:
                other_output.append(line.rstrip())
        stdout = worker.stdout.read()
    if worker.returncode != 0 or not stdout.strip():
        print(f"torch_ecg run failed (exit {worker.returncode}): {other_output[-1:]}")
        return
    report = json.loads(stdout.strip().splitlines()[-1])
    results, params, flops = report["results"], report["params"], report["flops_per_sample"]
    theirs = results["torch_ecg fp32"]["samples_per_s"]
    print(f"torch_ecg {report['torch_ecg']} (torch {report['torch']}): {params['torch_ecg'] / 1e6:.2f} M parameters, "
          f"{flops['torch_ecg'] / 1e9:.2f} GFLOP per sample-step; ours {params['ours'] / 1e6:.2f} M, "
          f"{flops['ours'] / 1e9:.2f} GFLOP")
    print(f"{'':36s} {'samples/s':>10s} {'at equal params':>16s} {'at equal FLOPs':>15s}")
    for name, result in results.items():
        rate = result["samples_per_s"]
        own = flops["torch_ecg" if name.startswith("torch_ecg") else "ours"]
        print(f"{name:36s} {rate:10.1f} {rate / theirs:15.2f}x {rate * own / (theirs * flops['torch_ecg']):14.2f}x")


# --- report --------------------------------------------------------------------------

SETTINGS = {  # name -> TrainingStep options, plus a half_batch switch
    "fp32 (baseline)": {},
    "fp32 + fused AdamW": {"fused": True},
    "bf16 autocast": {"bf16": True},
    "bf16 autocast + fused AdamW": {"bf16": True, "fused": True},
    "fp32, 1 thread": {"threads": 1},
    "fp32, half batch": {"half_batch": True},
    "torch.compile fp32": {"compile": True},
    "torch.compile bf16": {"compile": True, "bf16": True},
}


def chosen_settings(args: argparse.Namespace) -> dict[str, dict]:
    chosen = dict(SETTINGS)
    if not native_bf16(args.device):
        chosen = {name: options for name, options in chosen.items() if not options.get("bf16")}
    if args.device != "cpu" or args.threads == 1:
        chosen.pop("fp32, 1 thread")
    if args.device != "cpu":
        chosen.pop("fp32, half batch")
    if args.no_compile:
        chosen = {name: options for name, options in chosen.items() if not options.get("compile")}
    return chosen


def build_steps(args: argparse.Namespace) -> dict[str, TrainingStep]:
    steps = {}
    for name, options in chosen_settings(args).items():
        options = dict(options)
        batch = args.batch // 2 if options.pop("half_batch", False) else args.batch
        options.setdefault("threads", args.threads)
        steps[name] = TrainingStep(reference_model(args), batch=batch, length=args.length, n_classes=args.classes,
                                   device=args.device, **options)
    return steps


def print_table(steps: dict[str, TrainingStep], results: dict[str, dict], flops_per_sample: float, peaks: dict) -> None:
    print(f"\n{'setting':32s} {'samples/s':>10s} {'speed-up':>9s} {'FLOP util':>10s}  notes   (util: of the best peak)")
    baseline = results["fp32 (baseline)"]["samples_per_s"]
    for name, result in results.items():
        step = steps[name]
        peak = max(peaks[torch.bfloat16 if step.bf16 else torch.float32, step.threads].values())
        utilisation = flops_per_sample * result["samples_per_s"] / peak
        notes = [f"batch {step.batch}"] if step.batch != steps["fp32 (baseline)"].batch else []
        if step.forward is not step.model:
            notes.append(f"first step {result['warmup_s']:.0f} s (compiling)")
        print(f"{name:32s} {result['samples_per_s']:10.1f} {result['samples_per_s'] / baseline:8.2f}x "
              f"{utilisation:9.1%}  {'; '.join(notes)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=5000, help="samples per lead (10 s at 500 Hz)")
    parser.add_argument("--steps", type=int, default=3, help="timed rounds over the settings (after one warm-up)")
    parser.add_argument("--classes", type=int, default=26)
    parser.add_argument("--stem-kernel", type=int, default=15)
    parser.add_argument("--kernel", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (minutes of compiling)")
    parser.add_argument("--no-torch-ecg", action="store_true", help="skip the torch_ecg comparison")
    parser.add_argument("--torch-ecg-venv", default=str(DEFAULT_VENV))
    parser.add_argument("--worker", choices=["torch_ecg"], help=argparse.SUPPRESS)
    parser.add_argument("--model-arguments", help=argparse.SUPPRESS)  # JSON, for the worker
    parser.add_argument("--quick", action="store_true", help="batch 16 x 2,500 samples, 2 rounds, no compile")
    parser.add_argument("--accuracy", action="store_true",
                        help="only the bf16-against-fp32 accuracy check on the demo's network (a few minutes)")
    parser.add_argument("--emulated", action="store_true",
                        help="with --accuracy: run it where bf16 is emulated too (its accuracy holds, not its times)")
    args = parser.parse_args(argv)
    if args.accuracy:
        return accuracy_check(args.device, args.emulated)
    if args.quick:
        args.batch, args.length, args.steps, args.no_compile = 16, 2500, 2, True
    if args.worker:
        return run_worker(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here")
        return 1

    hardware = torch.cuda.get_device_name() if args.device == "cuda" else f"{cpu_name()}, {args.threads} threads"
    print(f"device: {hardware}; torch {torch.__version__}; CPU capability {torch.backends.cpu.get_cpu_capability()}; "
          f"native bf16: {'yes' if native_bf16(args.device) else 'no (bf16 settings skipped)'}")
    if args.device == "cpu":
        print("note: these cores may be shared with other work, so figures are noisy (lower bounds)")
    thread_counts = sorted({args.threads, 1}) if args.device == "cpu" else [args.threads]
    peaks = measure_peaks(args.device, thread_counts, bf16=native_bf16(args.device))
    torch.set_num_threads(args.threads)
    model = reference_model(args)
    flops_per_sample = training_step_flops(model, args.batch, args.length) / args.batch
    print(f"reference model: {n_params(model) / 1e6:.2f} M parameters; "
          f"{flops_per_sample / 1e9:.2f} GFLOP per sample per training step (forward + backward)")

    print(f"\ntraining step, batch {args.batch} x {LEADS} x {args.length}, fastest of {args.steps} interleaved rounds:")
    steps = build_steps(args)
    results = interleaved_throughput(steps, args.steps)
    peaks = measure_peaks(args.device, thread_counts, into=peaks, bf16=native_bf16(args.device))  # best of both
    torch.set_num_threads(args.threads)
    for (dtype, threads), rates in peaks.items():
        kernels = ", ".join(f"{kernel} {rate / 1e9:.0f}" for kernel, rate in rates.items())
        print(f"peak GFLOP/s, {str(dtype).removeprefix('torch.')}, {threads} thread(s): {kernels}")
    print_table(steps, results, flops_per_sample, peaks)

    if args.device == "cpu" and not args.no_torch_ecg:
        compare_torch_ecg(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
