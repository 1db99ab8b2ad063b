"""The network: SE-ResNet-1D with concentration head and MixStyle (see DESIGN.md).

`build_model` is the one entry point; it validates its arguments and assembles the
blocks. The model knows nothing of Ray or files.
"""

from __future__ import annotations

from heartbeatai.model.mixstyle import MixMode, MixStyle1d
from heartbeatai.model.se_resnet import SEResNet1d

__all__ = ["MixStyle1d", "SEResNet1d", "build_model"]


def build_model(
    n_classes: int,
    *,
    in_leads: int = 12,
    stem_width: int = 64,
    widths: tuple[int, ...] = (64, 128, 256, 512),
    depths: tuple[int, ...] = (2, 2, 2, 2),
    stem_kernel: int = 15,
    kernel: int = 7,
    se: bool = True,
    se_reduction: int = 16,
    dropout: float = 0.2,
    concentration: bool = True,
    concentration_stages: tuple[int, ...] = (1, 2, 3),
    demographics: int = 0,
    mixstyle_p: float = 0.0,
    mixstyle_alpha: float = 0.1,
    mixstyle_layers: tuple[int, ...] = (1, 2, 3),
    mixstyle_mix: MixMode = "random",
) -> SEResNet1d:
    """The reference configuration (defaults) has about 8.8 M parameters for 26 classes.

    `concentration_stages` and `mixstyle_layers` name stages 1..len(widths)-1: the last
    stage is always pooled into the classifier, and MixStyle after it would perturb
    the very features being classified.
    """
    widths, depths = tuple(widths), tuple(depths)
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    if not widths or len(widths) != len(depths):
        raise ValueError(f"widths {widths} and depths {depths} must be non-empty and of equal length")
    if min(widths) < 1 or min(depths) < 1 or stem_width < 1:
        raise ValueError("widths, depths and stem_width must be positive")
    if stem_kernel % 2 == 0 or kernel % 2 == 0:
        raise ValueError(f"kernels must be odd to keep 'same' padding, got {stem_kernel} and {kernel}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if se and se_reduction < 1:
        raise ValueError(f"se_reduction must be >= 1, got {se_reduction}")
    if demographics < 0:
        raise ValueError(f"demographics must be >= 0, got {demographics}")
    inner = range(1, len(widths))
    for name, stages in (("concentration_stages", concentration_stages), ("mixstyle_layers", mixstyle_layers)):
        bad = [s for s in stages if s not in inner]
        if bad:
            raise ValueError(f"{name} {bad} out of range: stages 1..{len(widths) - 1} (the last stage excluded)")

    mixstyle: MixStyle1d | None = MixStyle1d(mixstyle_p, mixstyle_alpha, mixstyle_mix)  # validates
    if mixstyle_p == 0.0 or not mixstyle_layers:
        mixstyle = None
    return SEResNet1d(
        n_classes,
        in_leads=in_leads,
        stem_width=stem_width,
        widths=widths,
        depths=depths,
        stem_kernel=stem_kernel,
        kernel=kernel,
        se_reduction=se_reduction if se else None,
        dropout=dropout,
        concentration_stages=tuple(sorted(set(concentration_stages))) if concentration else (),
        demographics=demographics,
        mixstyle=mixstyle,
        mixstyle_stages=tuple(mixstyle_layers),
    )
