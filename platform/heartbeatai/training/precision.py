"""Mixed precision: bf16 autocast on GPU; on CPU fp32 until benchmarks/ shows bf16 pays at equal accuracy.

`train --precision` chooses (it sets HEARTBEATAI_PRECISION, which the workers it starts on this
machine inherit): `auto` (the default: bf16 autocast on CUDA, fp32 on CPU), `fp32` (never
autocast: the reference `python -m benchmarks gpu` compares bf16 against), `bf16` (autocast
on CPU too, for CPUs with native bf16).
"""

from __future__ import annotations

import os

PRECISIONS = ("auto", "fp32", "bf16")
ENV = "HEARTBEATAI_PRECISION"


def precision() -> str:
    value = os.environ.get(ENV, "auto")
    if value not in PRECISIONS:
        raise ValueError(f"{ENV}={value!r}: choose one of {', '.join(PRECISIONS)}")
    return value


def autocast_enabled(device_type: str) -> bool:
    """Whether a step on `device_type` ("cpu", "cuda") runs under bf16 autocast."""
    mode = precision()
    return mode == "bf16" or (mode == "auto" and device_type == "cuda")


def autocast(device):
    """The autocast context of a step on `device` (a torch.device) under the chosen precision."""
    import torch  # here, not at the top: the command line reads PRECISIONS without torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast_enabled(device.type))
