"""The consensus configuration across the folds' selections (DESIGN.md, Study).

Each fold's search picks its own configuration; the consensus is the one configuration
to train on all sources afterwards: per field of the trial configuration, the median
of the folds' values when the field is numeric, the most frequent value otherwise
(loss kind, booleans, stage lists, fields that are off (None) in some folds). Ties go
to the value of the fold listed first, so the result does not depend on dict order.
"""

from __future__ import annotations

from collections import Counter
from numbers import Real
from typing import Any, Sequence

import numpy as np

from heartbeatai.config import TrialConfig, flatten_config


def consensus_value(values: Sequence[Any]) -> Any:
    """Median of numbers (an int when every value is an int), else the most frequent value."""
    numeric = all(isinstance(v, Real) and not isinstance(v, bool) for v in values)
    if numeric:
        median = float(np.median(values))
        return int(round(median)) if all(isinstance(v, int) for v in values) else median
    # Lists (stage widths, tapped stages) are compared whole.
    hashable = [tuple(v) if isinstance(v, list) else v for v in values]
    winner = Counter(hashable).most_common(1)[0][0]  # most_common keeps first-seen order on ties
    return list(winner) if isinstance(winner, tuple) else winner


def consensus_config(configs: Sequence[TrialConfig]) -> TrialConfig:
    """The validated consensus of the folds' selected trial configurations."""
    if not configs:
        raise ValueError("no selected configurations to build a consensus from")
    flats = [flatten_config(c) for c in configs]
    keys = flats[0].keys()
    consensus = {key: consensus_value([flat[key] for flat in flats]) for key in keys}
    return configs[0].with_overrides(consensus)
