"""The model benchmark's measuring pieces (the full run is `python -m benchmarks model`)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks.bench_model import TrainingStep, interleaved_throughput, main, training_step_flops


def test_training_step_flops_count_forward_and_weight_gradient_and_scale_with_batch():
    torch.manual_seed(0)
    conv = nn.Conv1d(12, 8, kernel_size=5, bias=False)
    length, out_length = 100, 96
    forward = 2 * 12 * 8 * 5 * out_length  # multiply-adds per sample
    # The input needs no gradient, so backward computes the weight gradient only.
    assert training_step_flops(conv, batch=6, length=length) == pytest.approx(6 * 2 * forward)


def test_interleaved_steps_train_each_model_and_keep_the_fastest_step():
    torch.manual_seed(0)
    tiny = lambda: nn.Sequential(nn.Conv1d(12, 4, 3), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 3))  # noqa: E731
    steps = {
        "fp32": TrainingStep(tiny(), batch=4, length=200, n_classes=3),
        "bf16 fused": TrainingStep(tiny(), batch=2, length=200, n_classes=3, bf16=True, fused=True),
    }
    before = {name: [p.detach().clone() for p in step.model.parameters()] for name, step in steps.items()}
    results = interleaved_throughput(steps, rounds=2)
    for name, step in steps.items():
        assert any(not torch.equal(a, b) for a, b in zip(before[name], step.model.parameters()))
        assert results[name]["samples_per_s"] == pytest.approx(step.batch / results[name]["step_s"])


@pytest.mark.slow
def test_benchmark_runs_end_to_end_on_small_inputs(capsys):
    torch.set_num_threads(1)
    assert main(["--batch", "2", "--length", "500", "--steps", "1", "--threads", "1", "--no-compile", "--no-torch-ecg"]) == 0
    out = capsys.readouterr().out
    assert "peak GFLOP/s, bfloat16" in out and "bf16 autocast + fused AdamW" in out and "half batch" in out
