"""A spurious demographic shortcut whose harm under Leave-One-Domain-Out follows from its construction.

Within each hospital, the age the acquisition recorded is moved by a per-class offset: a
record's reported age is its age plus `age_sd` times the sum of its classes' offsets in
that hospital. Each class has a direction (half the classes older, half younger), which
every hospital shows but one, the class's reversing hospital, where it is turned round:

    offset[d, c] = strength * direction[c], times -1 where d is c's reversing hospital.

The directions and the reversing hospitals (dealt round-robin over the classes in a seeded
order, so each hospital reverses about 1/n of them) are drawn once per benchmark seed. In a LODO fold that holds hospital k out, the
classes k reverses carry an association that every training hospital agrees on and the
held-out one contradicts: a classifier that reads age (the `demographics` arm) learns it
and is misled exactly there, where one without age is not. Every other class keeps, in the
held-out hospital, the association the training hospitals show at 1/(n-1) of its strength
after the reversing one is pooled in: a weak cue a classifier leans on little.

Why not offsets that sum to zero over the hospitals (each training pool then shows the
reverse of every held-out association)? Measured, it plants nothing: pooled, the training
association is only 1/(n-1) of the within-hospital one, and the network ignores so weak a
cue beside the signal's own evidence (docs/synthetic.md, "Demographic shortcut").

Only the recorded age moves: the physiology (heart rate, QRS voltage) follows the patient's
own age, so the signal carries none of the shortcut. At strength 0 nothing is drawn and
every record is identical to the benchmark without the shortcut; the reversing hospitals
come from their own random stream (keyed by the benchmark seed), so switching the shortcut
on changes ages and nothing else.
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
    order = rng.permutation(len(classes))
    reversing = {classes[j]: domains[rank % n] for rank, j in enumerate(order)}
    halves = np.array([1.0] * ((len(classes) + 1) // 2) + [-1.0] * (len(classes) // 2))
    direction = dict(zip(classes, rng.permutation(halves)))  # older or younger: the mean age stays put
    return {d: {c: strength * direction[c] * (-1.0 if reversing[c] == d else 1.0) for c in classes}
            for d in domains}


def reported_age(age: int, labels, offsets: dict[str, float], age_sd: float) -> int:
    """The age the hospital recorded: the patient's age moved by its classes' offsets."""
    if not offsets:
        return age
    moved = age + age_sd * sum(offsets.get(c, 0.0) for c in labels)
    return int(np.clip(round(moved), 18, 95))
