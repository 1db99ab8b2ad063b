"""A spurious demographic shortcut whose harm under Leave-One-Domain-Out follows from its construction.

A few target classes get an age band: within a hospital, a record with a target class has its
recorded age moved into the band at the old end (83-95) or the young end (18-30) of the age
range, and every other record into the middle (31-82), so that in the records the recorded
age all but names the target classes. Each target class has a direction (old or young) that
every hospital shows but one, its reversing hospital, where its records go to the other end:

    band[d, c] = direction[c], turned round where d is c's reversing hospital.

The targets (N_TARGETS of the classes, never NSR: a band for nearly every normal record names
nothing), their directions (half old, half young) and the reversing hospitals (dealt
round-robin, so each hospital reverses N_TARGETS / n of them) are drawn once per benchmark
seed. In the LODO fold that holds hospital k out, the target classes k reverses carry an
association every training hospital agrees on and the held-out one contradicts: a classifier
that reads age (the `demographics` arm) learns it and is misled exactly there, where one
without age is not. Its other target classes agree in k, and the age helps there; the harm
outweighs that help, as the classifier's age weight is linear: a class whose positives sit at
the wrong end is ranked below its negatives (docs/synthetic.md measures the net effect).

`strength` s in [0, 1] blends: recorded age = (1 - s) x age + s x the age mapped linearly into
the record's band. At 1 the bands are disjoint; at 0 nothing moves and every record is
identical to the benchmark without the shortcut.

Why bands and not a shift: a first construction moved the recorded age by a per-class number
of age SDs within the whole age spread. Age alone then ranked the classes at an AUROC of 0.59
(median), the signal far better, and the network left age alone: demographics - full did not
grow with the strength (docs/synthetic.md, "Demographic shortcut"). Shortcut learning needs a
shortcut that is easier or more predictive than the signal (ColoredMNIST's colour predicts
its label better than the digit does).

Only the recorded age moves: the physiology (heart rate, QRS voltage) follows the patient's own
age, so the signal carries none of the shortcut. The draws come from their own random stream
(keyed by the benchmark seed), so switching the shortcut on changes ages and nothing else.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Sequence

import numpy as np

_STREAM = zlib.crc32(b"age-shortcut")  # the bands' own stream: the records' draws stay untouched
N_TARGETS = 8  # target classes: two reversed per held-out hospital of the paper's four
YOUNG, MIDDLE, OLD = (18, 30), (31, 82), (83, 95)  # years: the recorded ages' bands
NEVER_TARGET = ("NSR",)


def age_bands(domains: Sequence[str], classes: Sequence[str], strength: float,
              seed: int) -> dict[str, dict[str, float]]:
    """domain -> target class -> +strength (its records recorded old) or -strength (young);
    empty at strength 0."""
    if not 0 <= strength <= 1:
        raise ValueError(f"age_shortcut must be within [0, 1], got {strength}")
    if strength == 0:
        return {d: {} for d in domains}
    n = len(domains)
    if n < 2:
        raise ValueError("the age shortcut needs two or more domains: it is defined by how they disagree")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM,)))
    candidates = [c for c in classes if c not in NEVER_TARGET]
    targets = [candidates[j] for j in rng.permutation(len(candidates))[:N_TARGETS]]
    reversing = {c: domains[rank % n] for rank, c in enumerate(targets)}
    halves = np.array([1.0] * ((len(targets) + 1) // 2) + [-1.0] * (len(targets) // 2))
    direction = dict(zip(targets, rng.permutation(halves)))
    return {d: {c: strength * direction[c] * (-1.0 if reversing[c] == d else 1.0) for c in targets}
            for d in domains}


def reported_age(age: int, labels: Collection[str], bands: dict[str, float]) -> int:
    """The age the hospital recorded: the patient's age blended into its record's band. A record
    with targets of both ends takes the band of the first in alphabetical order."""
    if not bands:
        return age
    hits = [bands[c] for c in sorted(labels) if c in bands]
    strength = abs(next(iter(bands.values())))
    lo, hi = (OLD if hits[0] > 0 else YOUNG) if hits else MIDDLE
    planted = lo + (age - 18) / (95 - 18) * (hi - lo)
    return int(np.clip(round((1 - strength) * age + strength * planted), 18, 95))
