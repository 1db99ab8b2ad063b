"""Multi-layer concentration head (after Ballas & Diou, ECG domain generalization).

Each tapped intermediate feature map is reduced to a short vector, so shallow
morphology features reach the classifier beside the deep, rhythm-level ones of the
last stage; a classifier fed only by the last stage tends to latch onto source-specific
high-level cues, which hurts on an unseen domain.
"""

from __future__ import annotations

import torch
from torch import nn


class ConcentrationBranch(nn.Module):
    """(B, C, T) -> (B, C/4): 1x1 conv, batch-norm, ReLU, dropout, global average pooling."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.out_features = max(channels // 4, 1)
        self.reduce = nn.Sequential(
            nn.Conv1d(channels, self.out_features, kernel_size=1, bias=False),
            nn.BatchNorm1d(self.out_features),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.pool = nn.AdaptiveAvgPool1d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.reduce(x)).flatten(1)


class ConcentrationHead(nn.Module):
    """Pools the tapped stages' feature maps into one vector, keyed by stage number."""

    def __init__(self, stage_channels: dict[int, int], dropout: float) -> None:
        super().__init__()
        self.stages = tuple(sorted(stage_channels))
        self.branches = nn.ModuleDict(
            {str(stage): ConcentrationBranch(stage_channels[stage], dropout) for stage in self.stages}
        )
        self.out_features = sum(branch.out_features for branch in self.branches.values())

    def forward(self, features: dict[int, torch.Tensor]) -> torch.Tensor:
        return torch.cat([self.branches[str(stage)](features[stage]) for stage in self.stages], dim=1)
