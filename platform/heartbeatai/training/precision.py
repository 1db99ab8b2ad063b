"""Mixed precision: bf16 autocast on GPU; on CPU fp32 until benchmarks/ shows bf16 pays at equal accuracy."""

from __future__ import annotations

import torch


def autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
