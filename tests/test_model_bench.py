"""The model benchmark's measuring pieces (the full run is `python -m benchmarks model`)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks.bench_model import main, step_throughput, training_step_flops


def test_training_step_flops_count_forward_and_weight_gradient_and_scale_with_batch():
    torch.manual_seed(0)
    conv = nn.Conv1d(12, 8, kernel_size=5, bias=False)
    length, out_length = 100, 96
    forward = 2 * 12 * 8 * 5 * out_length  # multiply-adds per sample
    # The input needs no gradient, so backward computes the weight gradient only.
    assert training_step_flops(conv, batch=6, length=length) == pytest.approx(6 * 2 * forward)


def test_step_throughput_trains_the_model_and_reports_positive_rates():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(12, 4, 3), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3))
    before = [p.detach().clone() for p in model.parameters()]
    result = step_throughput(model, batch=4, length=200, n_classes=3, steps=2, bf16=True, fused=True)
    assert result["samples_per_s"] > 0 and result["step_s"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.slow
def test_benchmark_runs_end_to_end_on_small_inputs(capsys):
    torch.set_num_threads(1)
    assert main(["--batch", "2", "--length", "500", "--steps", "1", "--threads", "1", "--no-compile", "--no-torch-ecg"]) == 0
    out = capsys.readouterr().out
    assert "peak matmul" in out and "bf16 autocast + fused AdamW" in out
