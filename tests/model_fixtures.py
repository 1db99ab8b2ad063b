"""A tiny network with every build_model argument spelt out (build_model has no defaults).

The values are the arguments the parameter counts in test_model.py were pinned with.
"""

from __future__ import annotations

import torch

from heartbeatai.model import build_model

TINY = dict(
    in_leads=12,
    stem_width=8,
    widths=(8, 16, 32, 64),
    depths=(1, 1, 1, 1),
    stem_kernel=15,
    kernel=7,
    se=True,
    se_reduction=4,
    dropout=0.0,
    concentration=True,
    concentration_stages=(1, 2, 3),
    demographics=0,
    mixstyle_p=0.0,
    mixstyle_alpha=0.1,
    mixstyle_layers=(1, 2, 3),
    mixstyle_mix="random",
)


def tiny_model(n_classes: int, **arguments) -> torch.nn.Module:
    """The tiny network for `n_classes`, `arguments` replacing TINY's."""
    return build_model(**{**TINY, "n_classes": n_classes, **arguments})
