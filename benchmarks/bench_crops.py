"""How often a random training crop shows what its record's label names (issue 23, section 4).

`python -m benchmarks crops [--records N] [--crops 3,5,10] [--seed S]` generates N records
per class with the class drawn at prevalence 1 (sinus rhythm beneath: the reference
hospital's profile, as tests/test_synth_physiology.py draws them), keeps the beat train the
generator laid down (its R times and which beats are ectopic), and measures, for crops of each
length placed uniformly over the record as training draws them (training/factory.py), the
share of crops in which the label's defining feature lies:

- PAC, PVC: an ectopic beat and the beat after it (its prematurity and the pause after it);
- SA: a swing of the RR interval over 0.12 s between beats inside the crop, the P-P
  criterion of sinus arrhythmia (rhythm.py);
- RBBB, a conduction pattern in every beat, is the reference: every crop that holds one
  beat shows it.

A crop whose record is shorter than it sees the whole record. The share is exact per record
(crop starts on a 10 ms grid) and averaged over records; the demo's crop length is read from
studies/configs/demo.yaml and marked.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from heartbeatai.data.synthetic import record as synth_record
from heartbeatai.data.synthetic import rhythm as synth_rhythm
from heartbeatai.data.synthetic.domains import reference_profile

CLASSES = ("PAC", "PVC", "SA", "RBBB")
SA_SWING_S = 0.12  # the P-P variation that defines sinus arrhythmia (rhythm.HRV_AMPLITUDE's comment)
GRID_S = 0.01
DEMO = Path(__file__).resolve().parents[1] / "studies" / "configs" / "demo.yaml"


def visible_share(r_times: np.ndarray, kinds: np.ndarray, duration: float, crop: float, feature: str) -> float:
    """Share of crop starts in [0, duration - crop] (on a GRID_S grid) whose crop shows `feature`:
    "ectopic" (a non-sinus beat and the next beat inside), "sa" (an RR swing over SA_SWING_S
    inside) or "beat" (any whole RR interval inside)."""
    if duration <= crop:
        starts = np.zeros(1)
    else:
        starts = np.arange(0.0, duration - crop + GRID_S / 2, GRID_S)
    shown = np.zeros(len(starts), dtype=bool)
    inside = lambda a, b: (a[None] >= starts[:, None]) & (b[None] < starts[:, None] + crop)  # noqa: E731
    first, second = r_times[:-1], r_times[1:]
    if feature == "ectopic":
        ectopic = kinds[:-1] != synth_rhythm.SINUS
        shown = inside(first[ectopic], second[ectopic]).any(axis=1)
    elif feature == "beat":
        shown = inside(first, second).any(axis=1)
    elif feature == "sa":
        rr = second - first
        within = inside(first, second)
        low = np.where(within, rr[None], np.inf).min(axis=1)
        high = np.where(within, rr[None], -np.inf).max(axis=1)
        shown = (high - low) > SA_SWING_S
    else:
        raise ValueError(f"unknown feature {feature!r}")
    return float(shown.mean())


FEATURE = {"PAC": "ectopic", "PVC": "ectopic", "SA": "sa", "RBBB": "beat"}


def beat_trains(abbr: str, n: int, seed: int, fs: int = 100) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(R times, beat kinds, duration) of n generated records whose true labels hold `abbr`."""
    prevalence = {abbr: 1.0, "NSR": 1.0} if abbr != "SA" else {"SA": 1.0, "NSR": 1.0}
    profile = replace(reference_profile(), prevalence=prevalence)
    rng = np.random.default_rng(seed)
    caught: list = []
    original = synth_rhythm.beats_from_rr

    def keep(rr, kinds, duration, rng_):
        train = original(rr, kinds, duration, rng_)
        caught.append((train, duration))
        return train

    trains = []
    synth_rhythm.beats_from_rr = keep  # record.py calls it through the module: the train is seen as drawn
    try:
        while len(trains) < n:
            caught.clear()
            record = synth_record.synthesize_record(profile, fs, 10.0, rng)
            if abbr in record.labels and caught:
                train, duration = caught[-1]
                trains.append((np.asarray(train.r_times), np.asarray(train.kinds), float(duration)))
    finally:
        synth_rhythm.beats_from_rr = original
    return trains


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks crops", description=__doc__)
    parser.add_argument("--records", type=int, default=300, help="records per class (default 300)")
    parser.add_argument("--crops", default="3,5,10", help="crop lengths in seconds (default 3,5,10)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    crops = [float(c) for c in args.crops.split(",")]
    demo_crop = float(yaml.safe_load(DEMO.read_text())["trial"]["preprocess"]["crop_seconds"])
    started = time.perf_counter()
    print(f"share of uniformly placed training crops that show the label's feature ({args.records} records per "
          f"class, nominal 10 s records; the demo crops {demo_crop:g} s)")
    print(f"   {'class':<6}{'feature':<10}" + "".join(f"{f'{c:g} s crop':>12}" for c in crops))
    for abbr in CLASSES:
        trains = beat_trains(abbr, args.records, args.seed)
        shares = [np.mean([visible_share(t, k, d, c, FEATURE[abbr]) for t, k, d in trains]) for c in crops]
        print(f"   {abbr:<6}{FEATURE[abbr]:<10}" + "".join(
            f"{s:>11.3f}{'*' if c == demo_crop else ' '}" for s, c in zip(shares, crops)))
    print(f"crops benchmark: {time.perf_counter() - started:.0f} s (* the demo's crop length)")
    return 0
