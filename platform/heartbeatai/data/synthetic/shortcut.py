"""A spurious demographic shortcut whose harm under Leave-One-Domain-Out follows from its construction.

Eight target classes (TARGETS: those the signal does not settle, so that age is the easier
cue) get an age band: within a hospital, a record with a target class has its
recorded age moved into the band at the old end (83-95) or the young end (18-30) of the age
range, and every other record into the middle (31-82), so that in the records the recorded
age all but names the target classes. Each target class is recorded old in half the
hospitals and young in the other half (a split drawn per class):

    band[d, c] = +1 for d in old[c], -1 otherwise,  |old[c]| = n // 2.

With the paper's four hospitals every LODO fold then holds out a hospital that sides with
one training hospital against two, for every target class: the pooled training records lean
the class to one end of the age range, the held-out one ties it to the other. A classifier that reads
age (the `demographics` arm) learns the training majority, linearly (age enters the
classifier's last layer), and in the held-out hospital ranks each target's positives below its
negatives by age; one without age is not misled. (With an odd number of hospitals, a fold
that holds out one of the majority leaves its training records tied, and age names nothing
there.)

Why every class in every fold: a first banded construction turned each class round in one
hospital only, agreeing in the other three. In each fold two targets were then misled and six
helped by age, the help cancelled much of the harm, and demographics - full at strength 1
was -0.027 macro AUROC against -0.011 at 0, too little for a study of the known-answer size to
decide (found in 1 of 5; docs/synthetic.md, "Known-answer study").

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
age, so the signal carries none of the shortcut. The splits come from their own random stream
(keyed by the benchmark seed), so switching the shortcut on changes ages and nothing else.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Sequence

import numpy as np

_STREAM = zlib.crc32(b"age-shortcut")  # the bands' own stream: the records' draws stay untouched
# The target classes: those the signal does not settle, so that the recorded age is the easier
# cue (ColoredMNIST's colour predicts the label better than the digit). Measured: a reference of
# the known-answer study's size, trained within distribution, ranks these at AUROC 0.52-0.95 and
# every other class with 10 or more positives at 0.97-1.00 (`python -m benchmarks synth
# --learnability --records 2400 --parts 2 --epochs 8 --set mixstyle.p=0.8`, 2026-12-08). A
# band on a class the signal settles misleads nothing: drawn among all classes, one benchmark
# seed's eight targets were AF, AFL, Brady, LAD, LBBB, LPR, SB and TAb, and the arm lost 0.007
# to the shortcut there against 0.033 at a seed whose draw held five of these.
TARGETS = ("IAVB", "LQRSV", "LQT", "NSIVCB", "PAC", "PVC", "QAb", "SA")
YOUNG, MIDDLE, OLD = (18, 30), (31, 82), (83, 95)  # years: the recorded ages' bands


def age_bands(domains: Sequence[str], classes: Sequence[str], strength: float,
              seed: int) -> dict[str, dict[str, float]]:
    """domain -> target class (those of TARGETS among `classes`) -> +strength (its records
    recorded old) or -strength (young); empty at strength 0. Each target is old in n // 2 of
    the hospitals and young in the rest, drawn per class and benchmark seed; which end the
    n // 2 take is a coin (for n odd they are the smaller side)."""
    if not 0 <= strength <= 1:
        raise ValueError(f"age_shortcut must be within [0, 1], got {strength}")
    if strength == 0:
        return {d: {} for d in domains}
    n = len(domains)
    if n < 2:
        raise ValueError("the age shortcut needs two or more domains: it is defined by how they disagree")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM,)))
    targets = [c for c in TARGETS if c in classes]
    bands: dict[str, dict[str, float]] = {d: {} for d in domains}
    for c in targets:
        first = strength * rng.choice((-1.0, 1.0))  # the end of the first n // 2 hospitals drawn
        for rank, j in enumerate(rng.permutation(n)):
            bands[domains[j]][c] = first if rank < n // 2 else -first
    return bands


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
