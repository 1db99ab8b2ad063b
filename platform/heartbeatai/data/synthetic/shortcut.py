"""A spurious demographic shortcut whose harm under Leave-One-Domain-Out follows from its construction.

Within each hospital, the age the acquisition recorded is moved by a per-class offset: a
record's reported age is its age plus `age_sd` times the sum of its classes' offsets in
that hospital. For every class, half the hospitals see its patients older and the other
half younger, and the offsets are centred over the hospitals, so they sum to zero:

    offset[d, c] = strength * (sign[d, c] - mean over d' of sign[d', c]),  sign = +1 or -1.

Any LODO fold's training hospitals therefore show, pooled over equally many records each
(the generator interleaves the domains), exactly the reverse of the held-out hospital's
age-class association, scaled by 1/(n-1): the sum over the n - 1 training hospitals is
minus the held-out one's. A classifier that reads age (the `demographics` arm) learns
the training association and is misled on the held-out hospital, where a classifier
without age is not; within a hospital (the matched reference) the shortcut is real and
age helps. Only the recorded age moves: the physiology (heart rate, QRS voltage) follows
the patient's own age, so the signal carries none of the shortcut.

At strength 0 nothing is drawn and every record is identical to the benchmark without the
shortcut; the signs come from their own random stream (keyed by the benchmark seed), so
switching the shortcut on changes ages and nothing else.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

_STREAM = zlib.crc32(b"age-shortcut")  # the signs' own stream: the records' draws stay untouched


def age_offsets(domains: Sequence[str], classes: Sequence[str], strength: float,
                seed: int) -> dict[str, dict[str, float]]:
    """domain -> class -> offset of the reported age, in that domain's age SDs (empty at strength 0)."""
    if strength < 0:
        raise ValueError(f"age_shortcut must be >= 0, got {strength}")
    if strength == 0:
        return {d: {} for d in domains}
    n = len(domains)
    if n < 2:
        raise ValueError("the age shortcut needs two or more domains: it is defined by how they disagree")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM,)))
    balanced = np.array([1.0] * ((n + 1) // 2) + [-1.0] * (n // 2))
    signs = np.stack([rng.permutation(balanced) for _ in classes], axis=1)  # (domains, classes)
    offsets = strength * (signs - signs.mean(axis=0, keepdims=True))
    return {d: {c: float(offsets[i, j]) for j, c in enumerate(classes)} for i, d in enumerate(domains)}


def reported_age(age: int, labels, offsets: dict[str, float], age_sd: float) -> int:
    """The age the hospital recorded: the patient's age moved by its classes' offsets."""
    if not offsets:
        return age
    moved = age + age_sd * sum(offsets.get(c, 0.0) for c in labels)
    return int(np.clip(round(moved), 18, 95))
