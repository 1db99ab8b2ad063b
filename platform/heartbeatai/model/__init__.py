"""The network: SE-ResNet-1D with concentration head and MixStyle (see DESIGN.md).

`build_model` is the one entry point: plain, explicit arguments (timm style), none of
them defaulted. The trial configuration (heartbeatai.config) owns the defaults and the
validation, and `training.factory.model_from_config` is the one mapping from it to
these arguments; a default here would be a second, silently different one. The model
knows nothing of Ray or files.
"""

from __future__ import annotations

from heartbeatai.model.mixstyle import MixMode, MixStyle1d
from heartbeatai.model.se_resnet import SEResNet1d

__all__ = ["MixStyle1d", "SEResNet1d", "build_model"]


def build_model(
    *,
    n_classes: int,
    in_leads: int,
    stem_width: int,
    widths: tuple[int, ...],
    depths: tuple[int, ...],
    stem_kernel: int,
    kernel: int,
    se: bool,
    se_reduction: int,
    dropout: float,
    concentration: bool,
    concentration_stages: tuple[int, ...],
    demographics: int,
    mixstyle_p: float,
    mixstyle_alpha: float,
    mixstyle_layers: tuple[int, ...],
    mixstyle_mix: MixMode,
) -> SEResNet1d:
    """The network for `n_classes` multi-label logits.

    `concentration_stages` and `mixstyle_layers` name stages 1..len(widths)-1: the last
    stage is always pooled into the classifier, and MixStyle after it would perturb
    the very features being classified.
    """
    # The class count comes from the study's class list, not from the trial
    # configuration, so no config check covers it; a zero-width classifier would
    # otherwise build and train on nothing.
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    mixstyle = MixStyle1d(mixstyle_p, mixstyle_alpha, mixstyle_mix) if mixstyle_p > 0 and mixstyle_layers else None
    return SEResNet1d(
        n_classes,
        in_leads=in_leads,
        stem_width=stem_width,
        widths=tuple(widths),
        depths=tuple(depths),
        stem_kernel=stem_kernel,
        kernel=kernel,
        se_reduction=se_reduction if se else None,
        dropout=dropout,
        concentration_stages=tuple(sorted(set(concentration_stages))) if concentration else (),
        demographics=demographics,
        mixstyle=mixstyle,
        mixstyle_stages=tuple(mixstyle_layers),
    )
