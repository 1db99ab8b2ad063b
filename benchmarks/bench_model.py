"""Model speed: training-step throughput, FLOP utilisation, torch_ecg's SE-ResNet beside it.

    .venv/bin/python -m benchmarks model [--steps 3] [--batch 64] [--length 5000]
                                         [--no-compile] [--no-torch-ecg] [--device cuda]

One plain training step (forward, BCE, backward, AdamW) of the reference model on
12 x length inputs is timed under each setting worth trying on a CPU (bf16 autocast,
fused AdamW, threads, batch size, torch.compile); its FLOPs come from
`torch.utils.flop_counter.FlopCounterMode` and the machine's peak from timed square
matmuls, so utilisation = achieved / peak FLOP/s in the step's dtype.

torch_ecg's closest model (its ResNet backbone with basic SE blocks in the ResNet-18
layout, given our kernels) runs the very same step function in a separate venv the
benchmark creates: this file runs there on its own (`--worker torch_ecg`), which is why
heartbeatai is imported lazily. torch_ecg is not a platform dependency.

Speed-ups are measured here; whether bf16 keeps accuracy (validation macro-AUROC within
0.01 of fp32 on the synthetic benchmark) is the training run's check, not this one's.
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


def make_batch(batch: int, length: int, n_classes: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, LEADS, length, generator=generator)
    y = (torch.rand(batch, n_classes, generator=generator) < 0.1).float()
    return x.to(device), y.to(device)


def step_throughput(
    model: nn.Module,
    *,
    batch: int,
    length: int,
    n_classes: int,
    steps: int,
    warmup: int = 1,
    bf16: bool = False,
    fused: bool = False,
    compile: bool = False,
    device: str = "cpu",
) -> dict:
    """Samples/s of the fastest of `steps` timed training steps after `warmup` untimed ones."""
    model = model.to(device).train()
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused or None)
    forward = torch.compile(model) if compile else model
    loss_fn = nn.BCEWithLogitsLoss()
    x, y = make_batch(batch, length, n_classes, device)
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        with autocast:
            logits = forward(x)
        loss_fn(logits.float(), y).backward()
        optimiser.step()

    def synchronise() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    start = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronise()
    warmup_s = time.perf_counter() - start
    # The fastest step, as timeit reports: on shared cores the others measure the neighbours.
    fastest = float("inf")
    for _ in range(steps):
        start = time.perf_counter()
        step()
        synchronise()
        fastest = min(fastest, time.perf_counter() - start)
    return {"samples_per_s": batch / fastest, "step_s": fastest, "warmup_s": warmup_s}


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


def run_worker(args: argparse.Namespace) -> int:
    """Inside the torch_ecg venv: time the same step, print one JSON line."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torch_ecg_se_resnet(args.classes, args.stem_kernel, args.kernel)
    result = step_throughput(model, batch=args.batch, length=args.length, n_classes=args.classes, steps=args.steps)
    import torch_ecg

    result.update(params=n_params(model), torch=torch.__version__, torch_ecg=torch_ecg.__version__)
    print(json.dumps(result))
    return 0


# --- machine and model figures -------------------------------------------------------


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def peak_matmul_flops(dtype: torch.dtype, device: str, n: int = 2048, seconds: float = 2.0) -> float:
    """Best FLOP/s of square matmuls over about `seconds` (2 n^3 FLOPs each)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    torch.mm(a, b)
    if device == "cuda":
        torch.cuda.synchronize()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


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


def measure_torch_ecg(args: argparse.Namespace) -> dict | None:
    python = ensure_torch_ecg_venv(Path(args.torch_ecg_venv))
    if python is None:
        return None
    command = [str(python), __file__, "--worker", "torch_ecg", "--threads", str(args.threads),
               "--batch", str(args.batch), "--length", str(args.length), "--steps", str(args.steps),
               "--classes", str(args.classes), "--stem-kernel", str(args.stem_kernel), "--kernel", str(args.kernel)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"torch_ecg run failed: {done.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- report --------------------------------------------------------------------------

SETTINGS = {  # name -> options of step_throughput, plus threads / batch overrides
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
    if args.device != "cpu" or args.threads == 1:
        chosen.pop("fp32, 1 thread")
    if args.device != "cpu":
        chosen.pop("fp32, half batch")
    if args.no_compile:
        chosen = {name: options for name, options in chosen.items() if not options.get("compile")}
    return chosen


def measure_peaks(device: str, thread_counts: list[int]) -> dict[tuple[torch.dtype, int], float]:
    peaks = {}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for dtype in (torch.float32, torch.bfloat16):
            peaks[dtype, threads] = peak_matmul_flops(dtype, device)
        print(f"peak matmul, {threads} thread(s): fp32 {peaks[torch.float32, threads] / 1e9:.1f} GFLOP/s, "
              f"bf16 {peaks[torch.bfloat16, threads] / 1e9:.1f} GFLOP/s", flush=True)
    return peaks


def measure_settings(args: argparse.Namespace, build, flops_per_sample: float, peaks: dict) -> dict[str, dict]:
    print(f"\ntraining step, batch {args.batch} x {LEADS} x {args.length}: fastest of {args.steps} timed steps "
          "per setting; utilisation against the matmul peak of the same dtype and threads")
    print(f"{'setting':32s} {'samples/s':>10s} {'speed-up':>9s} {'FLOP util':>10s}  notes")
    results: dict[str, dict] = {}
    for name, options in chosen_settings(args).items():
        options = dict(options)
        threads = options.pop("threads", args.threads)
        batch = args.batch // 2 if options.pop("half_batch", False) else args.batch
        torch.set_num_threads(threads)
        try:
            result = step_throughput(build(), batch=batch, length=args.length, n_classes=args.classes,
                                     steps=args.steps, device=args.device, **options)
        except Exception as error:  # a setting this machine cannot run is reported, not fatal
            print(f"{name:32s} failed: {type(error).__name__}: {str(error).splitlines()[0][:100]}")
            continue
        finally:
            torch.set_num_threads(args.threads)
        results[name] = result
        baseline = next(iter(results.values()))["samples_per_s"]
        peak = peaks[torch.bfloat16 if options.get("bf16") else torch.float32, threads]
        utilisation = flops_per_sample * result["samples_per_s"] / peak
        note = f"first step {result['warmup_s']:.0f} s (compiling)" if options.get("compile") else ""
        note = f"batch {batch}" if batch != args.batch else note
        print(f"{name:32s} {result['samples_per_s']:10.1f} {result['samples_per_s'] / baseline:8.2f}x "
              f"{utilisation:9.1%}  {note}", flush=True)
    return results


def compare_torch_ecg(args: argparse.Namespace, results: dict[str, dict]) -> None:
    print("\ntorch_ecg, same step, same inputs, separate venv:", flush=True)
    other = measure_torch_ecg(args)
    if other is None or not results:
        return
    theirs = other["samples_per_s"]
    print(f"torch_ecg {other['torch_ecg']} SE-ResNet (torch {other['torch']}): "
          f"{other['params'] / 1e6:.2f} M parameters, {theirs:.1f} samples/s fp32")
    best = max(results, key=lambda name: results[name]["samples_per_s"])
    if "fp32 (baseline)" in results:
        print(f"ours fp32 / torch_ecg: {results['fp32 (baseline)']['samples_per_s'] / theirs:.2f}x")
    print(f"ours best ({best}) / torch_ecg: {results[best]['samples_per_s'] / theirs:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=5000, help="samples per lead (10 s at 500 Hz)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per setting (after one warm-up)")
    parser.add_argument("--classes", type=int, default=26)
    parser.add_argument("--stem-kernel", type=int, default=15)
    parser.add_argument("--kernel", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (minutes of compiling)")
    parser.add_argument("--no-torch-ecg", action="store_true", help="skip the torch_ecg comparison")
    parser.add_argument("--torch-ecg-venv", default=str(DEFAULT_VENV))
    parser.add_argument("--worker", choices=["torch_ecg"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here")
        return 1

    from heartbeatai.model import build_model

    def build() -> nn.Module:
        torch.manual_seed(0)
        return build_model(args.classes, stem_kernel=args.stem_kernel, kernel=args.kernel)

    hardware = torch.cuda.get_device_name() if args.device == "cuda" else f"{cpu_name()}, {args.threads} threads"
    print(f"device: {hardware}; torch {torch.__version__}; CPU capability {torch.backends.cpu.get_cpu_capability()}")
    if args.device == "cpu":
        print("note: these cores are shared with other work right now, so figures are noisy (a lower bound)")
    peaks = measure_peaks(args.device, sorted({args.threads, 1}) if args.device == "cpu" else [args.threads])
    torch.set_num_threads(args.threads)
    model = build()
    flops_per_sample = training_step_flops(model, args.batch, args.length) / args.batch
    print(f"reference model: {n_params(model) / 1e6:.2f} M parameters; "
          f"{flops_per_sample / 1e9:.2f} GFLOP per sample per training step (forward + backward)")
    results = measure_settings(args, build, flops_per_sample, peaks)
    if args.device == "cpu" and not args.no_torch_ecg:
        compare_torch_ecg(args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
