"""Beat timing: sinus rhythm with heart-rate variability, AF, flutter, ectopic beats.

Everything here is in seconds and works on whole arrays of beats: a record has a few
dozen beats, so the cost is a handful of numpy calls, never a loop over samples.

HRV follows the two-band picture of McSharry et al. (IEEE TBME 2003): a Mayer-wave
oscillation near 0.1 Hz and respiratory sinus arrhythmia near 0.25 Hz modulate the RR
interval. AF conducts irregularly irregularly (independent RR draws, no P waves);
flutter conducts every m-th flutter wave, so its RR is a regular multiple of the
flutter cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal

# Ventricular beat kinds.
SINUS, PAC, PVC = 0, 1, 2

# Rates (bpm) drawn for each rhythm class; the gaps between the ranges keep a class
# defined by its rate well away from its neighbour's boundary.
RATE_RANGES = {"NSR": (62.0, 95.0), "SB": (40.0, 54.0), "STach": (106.0, 150.0), "AF": (60.0, 150.0),
               "ARH": (62.0, 95.0), "Brady": (38.0, 52.0), "PR": (60.0, 80.0)}
# The sinus classes told apart by rate alone, slowest first. `rate_overlap` widens each range
# towards its neighbours' by that many bpm, so that records near 60 or 100 bpm can be either:
# the class is then not a function of the signal, P(class | record) depends on the class's
# prevalence, and a prior shift costs F1 that a prior correction recovers (the degradation
# split's planted prevalence shift, docs/synthetic.md).
RATE_LADDER = ("SB", "NSR", "STach")
# Relative amplitude of each HRV band: ordinary sinus rhythm swings the RR a few per cent;
# sinus arrhythmia (SA) swings it with respiration by 25-40 % (P-P variation > 0.12 s
# at ordinary rates), and a junctional escape focus barely varies.
HRV_AMPLITUDE = {"sinus": (0.003, 0.012), "SA": (0.12, 0.2), "junctional": (0.002, 0.006)}
FLUTTER_RATE = (250.0, 330.0)  # atrial, per minute
FLUTTER_CONDUCTION = (2, 3, 4)  # ventricular beats every m-th flutter wave


@dataclass(frozen=True)
class BeatTrain:
    r_times: np.ndarray  # (beats,) R-peak times, s
    kinds: np.ndarray  # (beats,) SINUS | PAC | PVC
    rr_before: np.ndarray  # (beats,) preceding RR, s (drives QT by Bazett)


def rate_range(rhythm: str, overlap: float = 0.0) -> tuple[float, float]:
    """The rates drawn for `rhythm`: RATE_RANGES, widened by `overlap` bpm towards each
    neighbour on RATE_LADDER (at 0 the ranges keep their gaps)."""
    if overlap < 0:
        raise ValueError(f"rate_overlap must be >= 0, got {overlap}")
    low, high = RATE_RANGES[rhythm]
    if rhythm in RATE_LADDER:
        step = RATE_LADDER.index(rhythm)
        low -= overlap if step > 0 else 0.0
        high += overlap if step < len(RATE_LADDER) - 1 else 0.0
    return low, high


def heart_rate(rhythm: str, age: float, rng: np.random.Generator, overlap: float = 0.0) -> float:
    """Mean ventricular rate for the record; resting sinus rate falls slowly with age."""
    low, high = rate_range(rhythm, overlap)
    rate = rng.uniform(low, high)
    if rhythm in ("NSR", "ARH"):
        rate = float(np.clip(rate - 0.08 * (age - 50.0), low, high))
    return rate


def sinus_rr(duration: float, rate: float, rng: np.random.Generator, hrv: str = "sinus") -> np.ndarray:
    """RR intervals covering `duration` (plus a beat either side) from the two-band model;
    `hrv` picks the band amplitudes (HRV_AMPLITUDE): SA's respiratory band dominates."""
    mean_rr = 60.0 / rate
    n = int(duration / mean_rr) + 4
    beat_t = np.arange(n) * mean_rr  # integral-pulse approximation: beat k near k * mean RR
    lf = rng.uniform(0.08, 0.12)
    hf = rng.uniform(0.2, 0.3)
    lf_amp, hf_amp = rng.uniform(*HRV_AMPLITUDE["junctional" if hrv == "junctional" else "sinus"], size=2)
    if hrv == "SA":
        hf_amp = rng.uniform(*HRV_AMPLITUDE["SA"])
    phase = rng.uniform(0, 2 * np.pi, size=2)
    modulation = lf_amp * np.sin(2 * np.pi * lf * beat_t + phase[0]) + hf_amp * np.sin(2 * np.pi * hf * beat_t + phase[1])
    return mean_rr * (1.0 + modulation + 0.003 * rng.standard_normal(n))


def paced_rr(duration: float, rate: float) -> np.ndarray:
    """A demand pacemaker at its programmed rate: every interval the same."""
    mean_rr = 60.0 / rate
    return np.full(int(duration / mean_rr) + 4, mean_rr)


def af_rr(duration: float, rate: float, rng: np.random.Generator) -> np.ndarray:
    """Irregularly irregular RR: independent draws, coefficient of variation 0.15-0.3."""
    mean_rr = 60.0 / rate
    n = int(duration / (0.5 * mean_rr)) + 4
    cv = rng.uniform(0.15, 0.3)
    rr = mean_rr * rng.lognormal(-0.5 * cv**2, cv, size=n)
    return np.maximum(rr, 0.28)  # AV-node refractory period


def insert_ectopics(
    rr: np.ndarray, kinds: np.ndarray, count: int, kind: int, duration: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Make `count` beats premature, all inside the record; returns (rr, kinds).

    A PAC resets the sinus node (the following RR is one ordinary cycle: a
    non-compensatory pause); a PVC leaves the sinus node alone, so the premature and
    following intervals add up to two cycles (the full compensatory pause).
    """
    rr, kinds = rr.copy(), kinds.copy()
    # beats_from_rr starts the series up to one RR early: beat k lands in
    # [cumsum_k - rr_0, cumsum_k]; keep the ectopic and its pause inside the record.
    ends = np.cumsum(rr)
    k = np.arange(rr.size)
    inside = (ends - rr[0] > 0.3) & (ends + 2 * rr < duration - 0.3) & (k >= 1) & (k < rr.size - 2)
    # an ectopic needs ordinary neighbours (its coupling and pause are set against them)
    inside &= (np.convolve(kinds != SINUS, np.ones(3), mode="same") == 0)
    candidates = k[inside][::3]  # never two ectopics in a row
    if count == 0 or candidates.size == 0:
        return rr, kinds
    chosen = rng.choice(candidates, size=min(count, candidates.size), replace=False)
    coupling = rng.uniform(0.55, 0.7, size=chosen.size)
    cycle = rr[chosen]
    rr[chosen] = coupling * cycle
    if kind == PVC:
        rr[chosen + 1] = (2.0 - coupling) * cycle
    else:
        rr[chosen + 1] = cycle * rng.uniform(1.0, 1.08, size=chosen.size)
    kinds[chosen] = kind
    return rr, kinds


def beats_from_rr(rr: np.ndarray, kinds: np.ndarray, duration: float, rng: np.random.Generator) -> BeatTrain:
    """Place the RR series at a random phase and keep beats that touch the record."""
    start = -rng.uniform(0.0, rr[0])
    r_times = start + np.cumsum(rr)
    keep = (r_times > -0.6) & (r_times < duration + 0.6)  # a beat's waves reach ~0.6 s away
    return BeatTrain(r_times[keep], kinds[keep], rr[keep])


def flutter_beats(duration: float, rng: np.random.Generator) -> tuple[BeatTrain, float, float]:
    """Flutter conducted m:1; returns (beats, flutter frequency Hz, flutter phase s)."""
    flutter_hz = rng.uniform(*FLUTTER_RATE) / 60.0
    conduction = int(rng.choice(FLUTTER_CONDUCTION, p=(0.6, 0.15, 0.25)))
    cycle = conduction / flutter_hz
    wave_phase = rng.uniform(0.0, 1.0 / flutter_hz)
    av_delay = rng.uniform(0.18, 0.26)
    n = int(duration / cycle) + 4
    r_times = -cycle + wave_phase + av_delay + np.arange(n) * cycle
    keep = (r_times > -0.6) & (r_times < duration + 0.6)
    r_times = r_times[keep]
    return BeatTrain(r_times, np.full(r_times.size, SINUS, dtype=np.int8), np.full(r_times.size, cycle)), flutter_hz, wave_phase


def fibrillation_waves(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """AF f-waves (unit amplitude): 4-9 Hz with a wandering frequency and envelope."""
    f0 = rng.uniform(5.0, 8.0)
    wander = rng.uniform(0.3, 0.8) * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 2 * np.pi))
    dt = t[1] - t[0]
    phase = 2 * np.pi * np.cumsum(f0 + wander) * dt + rng.uniform(0, 2 * np.pi)
    envelope = 1.0 + 0.35 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 2 * np.pi))
    return envelope * (np.sin(phase) + 0.3 * np.sin(2 * phase + rng.uniform(0, 2 * np.pi)))


def flutter_waves(t: np.ndarray, flutter_hz: float, wave_phase: float) -> np.ndarray:
    """Sawtooth flutter waves (unit amplitude): slow descent, sharp upstroke."""
    return signal.sawtooth(2 * np.pi * flutter_hz * (t - wave_phase), width=0.2)
