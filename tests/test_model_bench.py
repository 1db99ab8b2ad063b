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


def test_the_accuracy_check_says_in_one_line_why_a_cpu_without_native_bf16_keeps_fp32(monkeypatch, capsys):
    from benchmarks import bench_model

    monkeypatch.setattr(bench_model, "native_bf16", lambda device: False)
    assert main(["--accuracy"]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert line.startswith("bf16 accuracy check skipped") and "fp32 stays the default" in line


def test_the_accuracy_verdict_is_the_margin_on_the_mean_over_seeds(monkeypatch, tmp_path, capsys):
    from benchmarks import precision_check

    aurocs = {("fp32", 1): 0.80, ("fp32", 2): 0.84, ("fp32", 3): 0.82, ("bf16", 1): 0.83, ("bf16", 2): 0.80,
              ("bf16", 3): 0.797}  # means 0.82 and 0.809: 0.011 apart, one seed alone 0.04
    monkeypatch.setattr(precision_check, "run_file", lambda data, folder, trial, seed: seed)
    monkeypatch.setattr(precision_check, "train", lambda seed, out, workers, gpus, precision: {
        "best": {"val_macro_auroc": aurocs[precision, seed]}, "epochs": [1.0 if precision == "fp32" else 0.5]})
    outside = precision_check.bf16_against_fp32(tmp_path, tmp_path, {}, 0)
    assert not outside["within"] and outside["gap"] == pytest.approx(-0.011)
    aurocs["bf16", 3] = 0.81  # mean 0.8133: 0.0067 below
    assert precision_check.bf16_against_fp32(tmp_path, tmp_path, {}, 0)["within"]
    assert "(2.00x)" in capsys.readouterr().out
