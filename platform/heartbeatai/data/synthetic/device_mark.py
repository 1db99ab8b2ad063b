"""An acquisition shortcut for the domain-generalization algorithms, in the spirit of ColoredMNIST.

A recording device can leave a mark in the signal: here an in-band tone (a sine of MARK_MV on
every lead) at a frequency of its own per target class, which the model's band-pass (0.5-45
Hz by default) keeps and its per-lead normalisation scales with everything else. Within a
hospital the mark goes with its class: a record carries class c's tone with probability

    P(tone | c) = (1 + a) / 2,    P(tone | not c) = (1 - a) / 2,

where a = strength x level[d, c]. Every hospital but one agrees with a level drawn from
TRAINING_LEVELS (the training environments disagree on how strongly, as ColoredMNIST's 0.9
and 0.8 do, which is what IRM, V-REx and GroupDRO can read); the class's reversing hospital
has level -1. So in the LODO fold that holds hospital k out, the class k turns round carries
a cue every training hospital shows and the held-out one contradicts, while the matched
reference (which trains on k's other records too) sees the contradiction: ERM should lose
more under LODO than on the reference. N_TARGETS is one class per paper domain, drawn among
the classes with a prevalence of at least MIN_PREVALENCE in every domain (AF, PAC, RBBB, IAVB
and LBBB at the sources' prevalences), so that every held-out domain has positives of the class
it turns round.

The mark is drawn after everything else a record draws, so the records' signals before the
tone, their labels and demographics are those of the benchmark without it; at strength 0
nothing is drawn. Targets, frequencies, levels and reversing hospitals come from a stream of
their own, keyed by the benchmark seed.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Mapping

import numpy as np

_STREAM = zlib.crc32(b"device-mark")
N_TARGETS = 4
TONES_HZ = (13.0, 19.0, 27.0, 33.0)  # in the default band, below 50 Hz (fs 100) and off 40 Hz (60 Hz mains aliased)
MARK_MV = 0.1  # about a tenth of a QRS: easy for a convolution to find, as colour is in ColoredMNIST
TRAINING_LEVELS = (1.0, 0.8, 0.6)
NEVER_TARGET = ("NSR",)
MIN_PREVALENCE = 0.02


def mark_levels(prevalence: Mapping[str, Mapping[str, float]], strength: float,
                seed: int) -> dict[str, dict[str, tuple[float, float]]]:
    """domain -> target class -> (tone Hz, a): a in [-1, 1], the tone's agreement with the class.
    `prevalence`: domain -> class -> probability (the domains' profiles)."""
    domains = list(prevalence)
    if not 0 <= strength <= 1:
        raise ValueError(f"acquisition_shortcut must be within [0, 1], got {strength}")
    if strength == 0:
        return {d: {} for d in domains}
    n = len(domains)
    if n < 2:
        raise ValueError("the acquisition shortcut needs two or more domains: it is defined by how they disagree")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM,)))
    classes = sorted(set().union(*(prevalence[d] for d in domains)))
    candidates = [c for c in classes if c not in NEVER_TARGET
                  and min(prevalence[d].get(c, 0.0) for d in domains) >= MIN_PREVALENCE]
    if not candidates:
        raise ValueError(f"the acquisition shortcut needs a class of prevalence >= {MIN_PREVALENCE} in every domain")
    targets = [candidates[j] for j in rng.permutation(len(candidates))[:N_TARGETS]]
    levels: dict[str, dict[str, tuple[float, float]]] = {d: {} for d in domains}
    for rank, (c, tone) in enumerate(zip(targets, TONES_HZ)):
        reversing = domains[rank % n]
        agreeing = [d for d in domains if d != reversing]
        drawn = rng.permutation(np.resize(TRAINING_LEVELS, len(agreeing)))
        for d, level in zip(agreeing, drawn):
            levels[d][c] = (tone, strength * float(level))
        levels[reversing][c] = (tone, -strength)
    return levels


def add_marks(signal: np.ndarray, fs: float, labels: Collection[str], marks: dict[str, tuple[float, float]],
              rng: np.random.Generator) -> np.ndarray:
    """The (samples, leads) signal with each target class's tone where the draw puts one."""
    if not marks:
        return signal
    t = np.arange(signal.shape[0]) / fs
    out = signal.copy()
    for c, (tone, agreement) in marks.items():
        present = rng.random() < (1 + (agreement if c in labels else -agreement)) / 2
        phase = rng.uniform(0, 2 * np.pi)  # drawn either way: the next class's draw does not depend on this one
        if present:
            out += np.float32(MARK_MV) * np.sin(2 * np.pi * tone * t + phase).astype(np.float32)[:, None]
    return out
