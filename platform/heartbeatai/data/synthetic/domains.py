"""Hospitals of the synthetic benchmark and the knob that scales their differences.

A domain is everything that differs between hospitals: which diagnoses come through
the door (prevalence), how the ECG is acquired (device rate, filter band, gain, mains
frequency, noise, electrode placement, record length) and who the patients are (age,
sex), and how carefully the labels were written (label noise). The four defaults are
stylised after CPSC2018, PTB-XL, Georgia and Chapman-Shaoxing: prevalences come from
the challenge's per-source counts; the acquisition settings are plausible choices that
make the sources differ the way real ones do, not measurements of their devices.

`shifted(profile, shift, kinds)` moves each domain away from the reference (the mean
of the four defaults) by `shift` times its own difference: shift 0 makes all domains
one distribution, 1 is the default, larger exaggerates. Kinds switch independently,
so a study can tell acquisition style from prevalence from label noise.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources

import numpy as np

from heartbeatai.ecg import PAPER_DOMAINS
from heartbeatai.labels import ST_CLASSES, scored_vocabulary

SHIFT_KINDS = ("style", "prevalence", "label_noise")

# Classes the generator draws: every scored class of 2021, in the vocabulary's order
# (physiology in beats.py / rhythm.py, co-occurrence rules in labels.py).
CLASSES = tuple(scored_vocabulary().abbrs)


def drawn_classes(include_st: bool = False) -> tuple[str, ...]:
    """The generator's classes, with CPSC's ST changes (labels.ST_CLASSES) when asked."""
    return CLASSES + (tuple(ST_CLASSES) if include_st else ())


# The paper's four domains are the defaults (and define the reference hospital);
# ningbo is available as a fifth, the only source with PRWP.
SOURCE_COUNTS = "synthetic/source_counts.csv"


@dataclass(frozen=True)
class DomainProfile:
    name: str
    prevalence: dict[str, float]  # class abbreviation -> probability
    native_fs: dict[int, float]  # device sampling rate -> share of records
    mains_hz: dict[int, float]  # 50 or 60 Hz -> share of records
    highpass_hz: float  # device band: causal first-order high-pass ...
    lowpass_hz: float  # ... and Butterworth low-pass of `lowpass_order`
    lowpass_order: float  # rounded; a steep one rings after the QRS, a gentle one blunts it
    gain: float  # calibration error of the amplifier
    mains_mv: float
    emg_mv: float
    contact_mv: float  # low-frequency skin-contact noise on the chest electrodes (suction cups)
    wander_mv: float
    motion_rate: float  # records with an electrode-motion artefact
    placement_deg: tuple[float, float, float]  # systematic rotation about X, Y, Z
    placement_jitter_deg: float
    precordial_shift: float  # chest electrodes displaced along V1..V6, in electrode spacings (+ lateral)
    length_spread: float  # sd of log record length
    age_mean: float
    age_sd: float
    female_share: float
    label_noise: float  # per label: dropped or confused with a neighbour
    # target class -> +s (recorded old) or -s (young): the spurious age shortcut (shortcut.py); none by default
    age_bands: dict[str, float] = field(default_factory=dict)
    # target class -> (tone Hz, agreement): the acquisition shortcut (device_mark.py); none by default
    device_marks: dict[str, tuple[float, float]] = field(default_factory=dict)
    # bpm by which the sinus rate classes' ranges overlap (rhythm.rate_range); alike in every
    # domain, so it is no shift of its own; none by default
    rate_overlap: float = 0.0

    def as_dict(self) -> dict:
        data = asdict(self)
        data["native_fs"] = {str(k): v for k, v in self.native_fs.items()}
        data["mains_hz"] = {str(k): v for k, v in self.mains_hz.items()}
        return data


@functools.lru_cache(maxsize=None)
def source_counts() -> dict[str, dict[str, int]]:
    """domain -> class (and "records") -> count, as shipped in package data.

    The table is derived from the challenge's dx_mapping_scored.csv / _unscored.csv
    (equivalent codes summed) and the per-source record totals; tests/test_synth.py
    rederives it from those files.
    """
    path = resources.files("heartbeatai") / "package_data" / SOURCE_COUNTS
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    domains = [c for c in rows[0] if c not in ("class", "codes", "source")]
    return {d: {row["class"]: int(row[d]) for row in rows} for d in domains}


@functools.lru_cache(maxsize=None)
def source_prevalence(include_st: bool = False) -> dict[str, dict[str, float]]:
    """domain -> class -> prevalence: the source's count over its records."""
    return {d: {a: counts[a] / counts["records"] for a in drawn_classes(include_st)} for d, counts in source_counts().items()}


def default_profiles(include_st: bool = False) -> dict[str, DomainProfile]:
    prev = source_prevalence(include_st)
    common = dict(placement_jitter_deg=4.0)
    return {
        "cpsc": DomainProfile(
            "cpsc", prev["cpsc"], {500: 1.0}, {50: 1.0}, highpass_hz=0.5, lowpass_hz=40.0, lowpass_order=5,
            gain=1.0, mains_mv=0.03, emg_mv=0.012, contact_mv=0.0, wander_mv=0.08, motion_rate=0.1,
            placement_deg=(0.0, -8.0, 8.0), precordial_shift=0.45, length_spread=0.35, age_mean=55.0,
            age_sd=19.0, female_share=0.46, label_noise=0.02, **common),
        "ptbxl": DomainProfile(
            "ptbxl", prev["ptbxl"], {400: 1.0}, {50: 1.0}, highpass_hz=0.05, lowpass_hz=150.0, lowpass_order=2,
            gain=0.85, mains_mv=0.01, emg_mv=0.02, contact_mv=0.0, wander_mv=0.2, motion_rate=0.15,
            placement_deg=(0.0, 0.0, 0.0), precordial_shift=0.0, length_spread=0.0, age_mean=62.0,
            age_sd=17.0, female_share=0.48, label_noise=0.05, **common),
        "georgia": DomainProfile(
            "georgia", prev["georgia"], {500: 1.0}, {60: 1.0}, highpass_hz=0.05, lowpass_hz=100.0, lowpass_order=2,
            gain=1.15, mains_mv=0.04, emg_mv=0.05, contact_mv=0.0, wander_mv=0.25, motion_rate=0.25,
            placement_deg=(0.0, 8.0, -8.0), precordial_shift=-0.6, length_spread=0.0, age_mean=66.0,
            age_sd=14.0, female_share=0.45, label_noise=0.08, **common),
        "chapman": DomainProfile(
            "chapman", prev["chapman"], {500: 1.0}, {50: 1.0}, highpass_hz=0.67, lowpass_hz=35.0, lowpass_order=1,
            gain=1.0, mains_mv=0.005, emg_mv=0.006, contact_mv=0.08, wander_mv=0.04, motion_rate=0.05,
            placement_deg=(0.0, 10.0, 5.0), precordial_shift=-0.25, length_spread=0.0, age_mean=58.0,
            age_sd=18.0, female_share=0.44, label_noise=0.03, **common),
        # Not a paper domain (not in the reference); Ningbo and Chapman came from one
        # group's devices, so this one differs from chapman mainly in its sources' labels.
        "ningbo": DomainProfile(
            "ningbo", prev["ningbo"], {500: 1.0}, {50: 1.0}, highpass_hz=0.67, lowpass_hz=35.0, lowpass_order=1,
            gain=1.0, mains_mv=0.005, emg_mv=0.008, contact_mv=0.04, wander_mv=0.05, motion_rate=0.05,
            placement_deg=(0.0, 6.0, 2.0), precordial_shift=0.1, length_spread=0.0, age_mean=57.0,
            age_sd=17.0, female_share=0.47, label_noise=0.03, **common),
    }


# How each field interpolates: "log" for scales and frequencies (ratios matter), "share"
# for categorical mixtures, "lin" otherwise. Which shift kind governs it:
_STYLE_FIELDS = {
    "native_fs": "share", "mains_hz": "share", "highpass_hz": "log", "lowpass_hz": "log", "lowpass_order": "lin",
    "gain": "log", "mains_mv": "log", "emg_mv": "log", "contact_mv": "lin", "wander_mv": "log", "motion_rate": "lin",
    "placement_deg": "lin", "placement_jitter_deg": "lin", "precordial_shift": "lin", "length_spread": "lin",
    "age_mean": "lin", "age_sd": "lin", "female_share": "lin",
}
_KIND_FIELDS = {"style": _STYLE_FIELDS, "prevalence": {"prevalence": "share_independent"},
                "label_noise": {"label_noise": "lin"}}


def _mean_share(dicts: list[dict]) -> dict:
    keys = sorted({k for d in dicts for k in d})
    return {k: float(np.mean([d.get(k, 0.0) for d in dicts])) for k in keys}


def reference_profile(include_st: bool = False) -> DomainProfile:
    """The mean of the paper's four hospitals: every domain at shift 0."""
    profiles = [p for name, p in default_profiles(include_st).items() if name in PAPER_DOMAINS]
    values = {}
    for f in fields(DomainProfile):
        items = [getattr(p, f.name) for p in profiles]
        if f.name == "name":
            values[f.name] = "reference"
        elif isinstance(items[0], dict):
            values[f.name] = _mean_share(items)
        elif isinstance(items[0], tuple):
            values[f.name] = tuple(float(x) for x in np.mean(items, axis=0))
        elif f.name in _STYLE_FIELDS and _STYLE_FIELDS[f.name] == "log":
            values[f.name] = float(np.exp(np.mean(np.log(items))))
        else:
            values[f.name] = float(np.mean(items))
    return DomainProfile(**values)


def _move(ref, own, shift: float, how: str):
    if how == "log":
        return float(ref * (own / ref) ** shift)
    if how == "lin" and isinstance(own, tuple):
        return tuple(float(r + shift * (o - r)) for r, o in zip(ref, own))
    if how == "lin":
        return float(ref + shift * (own - ref))
    keys = sorted(set(ref) | set(own))
    moved = {k: max(0.0, ref.get(k, 0.0) + shift * (own.get(k, 0.0) - ref.get(k, 0.0))) for k in keys}
    if how == "share":  # a mixture: weights renormalised, categories at zero dropped
        total = sum(moved.values())
        return {k: v / total for k, v in moved.items() if v > 0}
    return {k: min(v, 0.95) for k, v in moved.items()}  # independent class probabilities


def shifted(profile: DomainProfile, reference: DomainProfile, shift: float, kinds: tuple[str, ...]) -> DomainProfile:
    """`profile` moved to reference + shift * (profile - reference) for the chosen kinds;
    the other kinds sit at the reference, so each kind can be studied alone."""
    changes = {}
    for kind in SHIFT_KINDS:
        amount = shift if kind in kinds else 0.0
        for name, how in _KIND_FIELDS[kind].items():
            changes[name] = _move(getattr(reference, name), getattr(profile, name), amount, how)
    moved = replace(profile, **changes)
    return replace(
        moved,
        motion_rate=float(np.clip(moved.motion_rate, 0.0, 1.0)),
        female_share=float(np.clip(moved.female_share, 0.0, 1.0)),
        length_spread=max(0.0, moved.length_spread),
        placement_jitter_deg=max(0.0, moved.placement_jitter_deg),
        label_noise=float(np.clip(moved.label_noise, 0.0, 0.5)),
        highpass_hz=max(0.01, moved.highpass_hz),
        lowpass_order=max(1.0, moved.lowpass_order),
        contact_mv=max(0.0, moved.contact_mv),
        age_sd=max(1.0, moved.age_sd),
    )
