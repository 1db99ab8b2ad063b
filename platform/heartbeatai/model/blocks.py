"""Building blocks of the 1-D SE-ResNet: squeeze-and-excitation and the residual block.

Blocks take explicit arguments; the network (se_resnet.py) decides how to stack them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SqueezeExcitation1d(nn.Module):
    """Channel gating of Hu et al. (CVPR 2018) over a (B, C, T) feature map.

    The gate is its own `nn.Sigmoid` module so that explanations can read its values
    with a forward hook instead of the model keeping per-batch state.
    """

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        # The excitation's weights are those of two 1x1 convolutions (checkpoints keep their
        # layout), but they act on the pooled (B, C) vector as plain matrix products: a 1x1
        # convolution over a length-1 signal costs a oneDNN convolution call forward and two
        # backward, which made SE 8% of a CPU training step (benchmarks/bench_model.py).
        self.excite = nn.Sequential(
            nn.Conv1d(channels, hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv1d(hidden, channels, kernel_size=1),
        )
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduce, relu, expand = self.excite
        squeezed = x.mean(dim=-1)
        hidden = relu(F.linear(squeezed, reduce.weight.squeeze(-1), reduce.bias))
        return x * self.gate(F.linear(hidden, expand.weight.squeeze(-1), expand.bias)).unsqueeze(-1)


class ResidualBlock1d(nn.Module):
    """Basic residual block (two convolutions) with optional SE before the addition.

    Dropout sits between the two convolutions, as in the CinC 2020 runner-up
    (Zhao et al.), which regularises without touching the identity path.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel: int,
        stride: int,
        se_reduction: int | None,
        dropout: float,
    ) -> None:
        super().__init__()
        padding = kernel // 2
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel, padding=padding, bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.se = SqueezeExcitation1d(out_channels, se_reduction) if se_reduction else nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm1d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.relu(self.bn1(self.conv1(x))))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + self.shortcut(x))


def residual_stage(
    in_channels: int,
    out_channels: int,
    *,
    depth: int,
    kernel: int,
    stride: int,
    se_reduction: int | None,
    dropout: float,
) -> nn.Sequential:
    """`depth` residual blocks; only the first changes width and time resolution."""
    blocks = [
        ResidualBlock1d(
            in_channels if i == 0 else out_channels,
            out_channels,
            kernel=kernel,
            stride=stride if i == 0 else 1,
            se_reduction=se_reduction,
            dropout=dropout,
        )
        for i in range(depth)
    ]
    return nn.Sequential(*blocks)
