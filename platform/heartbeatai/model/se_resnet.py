"""SE-ResNet-1D for 12-lead ECG, after the CinC 2020 runner-up (Zhao et al.).

Stem (wide strided convolution + max-pool), residual stages with squeeze-and-excitation,
optional MixStyle after chosen stages, global average pooling of the last stage joined
by the concentration head's pooled intermediate stages and by demographics (age/sex,
scaled by the caller), then one linear classifier producing multi-label logits.
Stages are numbered 1..len(widths).
"""

from __future__ import annotations

import torch
from torch import nn

from heartbeatai.model.blocks import residual_stage
from heartbeatai.model.concentration import ConcentrationHead
from heartbeatai.model.mixstyle import MixStyle1d


class SEResNet1d(nn.Module):
    def __init__(
        self,
        n_classes: int,
        *,
        in_leads: int,
        stem_width: int,
        widths: tuple[int, ...],
        depths: tuple[int, ...],
        stem_kernel: int,
        kernel: int,
        se_reduction: int | None,
        dropout: float,
        concentration_stages: tuple[int, ...],
        demographics: int,
        mixstyle: MixStyle1d | None,
        mixstyle_stages: tuple[int, ...],
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv1d(in_leads, stem_width, stem_kernel, stride=2, padding=stem_kernel // 2, bias=False),
            nn.BatchNorm1d(stem_width),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(kernel_size=3, stride=2, padding=1),
        )
        in_channels = stem_width
        stages = []
        for number, (width, depth) in enumerate(zip(widths, depths, strict=True), start=1):
            stages.append(
                residual_stage(
                    in_channels,
                    width,
                    depth=depth,
                    kernel=kernel,
                    stride=1 if number == 1 else 2,
                    se_reduction=se_reduction,
                    dropout=dropout,
                )
            )
            in_channels = width
        self.stages = nn.ModuleList(stages)
        self.mixstyle = mixstyle
        self.mixstyle_stages = frozenset(mixstyle_stages) if mixstyle is not None else frozenset()
        self.concentration = (
            ConcentrationHead({stage: widths[stage - 1] for stage in concentration_stages}, dropout)
            if concentration_stages
            else None
        )
        self.demographics = demographics
        self.pool = nn.AdaptiveAvgPool1d(1)
        features = widths[-1] + demographics
        if self.concentration is not None:
            features += self.concentration.out_features
        self.classifier = nn.Linear(features, n_classes)

    @property
    def last_conv_stage(self) -> nn.Module:
        """The deepest convolutional stage: the layer Grad-CAM attributes at."""
        return self.stages[-1]

    def features(
        self,
        x: torch.Tensor,
        demographics: torch.Tensor | None = None,
        domains: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, leads, T) float signal -> (B, F) representation: the pooled last stage and the
        concentration head's pooled taps, what feature-alignment algorithms align."""
        if (demographics is None) != (self.demographics == 0):
            given = "none" if demographics is None else tuple(demographics.shape)
            raise ValueError(f"model was built for {self.demographics} demographic inputs, forward got {given}")
        h = self.stem(x)
        tapped: dict[int, torch.Tensor] = {}
        for number, stage in enumerate(self.stages, start=1):
            h = stage(h)
            if number in self.mixstyle_stages:
                h = self.mixstyle(h, domains)
            tapped[number] = h
        pooled = [self.pool(h).flatten(1)]
        if self.concentration is not None:
            pooled.append(self.concentration(tapped))
        return torch.cat(pooled, dim=1) if len(pooled) > 1 else pooled[0]

    def classify(self, features: torch.Tensor, demographics: torch.Tensor | None = None) -> torch.Tensor:
        """Representation (+ demographics, joined here: they describe the patient, not the
        signal, so no algorithm aligns them) -> (B, n_classes) logits."""
        if demographics is not None:
            features = torch.cat([features, demographics.to(features.dtype)], dim=1)
        return self.classifier(features)

    def forward(
        self,
        x: torch.Tensor,
        demographics: torch.Tensor | None = None,
        domains: torch.Tensor | None = None,
        *,
        with_features: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, leads, T) float signal -> (B, n_classes) logits; with_features: (features, logits),
        so an algorithm that needs the representation gets it through DDP's forward."""
        features = self.features(x, demographics, domains)
        logits = self.classify(features, demographics)
        return (features, logits) if with_features else logits
