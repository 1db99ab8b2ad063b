"""Mixed precision: bf16 autocast on GPU and on CPUs that compute bf16 natively, fp32 elsewhere.

`train --precision` chooses (it sets HEARTBEATAI_PRECISION, which the workers it starts on this
machine inherit; a study's trials read the variable as the study was started with it):
`auto` (the default: bf16 autocast on CUDA and on CPUs with the AVX512-BF16 or AMX-BF16 flags,
fp32 on other CPUs), `fp32` (never autocast), `bf16` (autocast on any CPU; emulated where the
flags are missing, about 2-10x slower).

Why bf16 is the CPU default where it is native: `python -m benchmarks model --accuracy`
trains the demo's network in both precisions at 3 seeds, and bf16's mean validation macro
AUROC was within 0.01 of fp32's (+0.0018, 2026-12-07), while the reference model's training
step ran at 44.7 samples/s against fp32's 22.9 on such a CPU (`python -m benchmarks model
--quick`, docs/benchmarks.md). Where bf16 is emulated it is slower, so fp32 stays.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16")
ENV = "HEARTBEATAI_PRECISION"


def precision() -> str:
    value = os.environ.get(ENV, "auto")
    if value not in PRECISIONS:
        raise ValueError(f"{ENV}={value!r}: choose one of {', '.join(PRECISIONS)}")
    return value


@functools.cache
def native_bf16_cpu() -> bool:
    """Whether this CPU computes bf16 natively: the AVX512-BF16 or AMX-BF16 flags (Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_enabled(device_type: str) -> bool:
    """Whether a step on `device_type` ("cpu", "cuda") runs under bf16 autocast."""
    mode = precision()
    if mode == "auto":
        return device_type == "cuda" or (device_type == "cpu" and native_bf16_cpu())
    return mode == "bf16"


def precision_used(device_type: str) -> str:
    """"bf16" or "fp32": what a step on `device_type` computes in, as each run records it."""
    return "bf16" if autocast_enabled(device_type) else "fp32"


def autocast(device):
    """The autocast context of a step on `device` (a torch.device) under the chosen precision."""
    import torch  # here, not at the top: the command line reads PRECISIONS without torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast_enabled(device.type))
