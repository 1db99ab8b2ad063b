"""One synthetic record, from a hospital profile and a random generator.

Order of events follows the signal path: patient and diagnoses -> beat timing and
shapes -> cardiac dipole (+ atrial activity) -> rotated onto the electrodes -> electrode
noise -> the device's filter at its own rate -> resampled to the requested rate ->
leads formed -> amplifier gain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heartbeatai.data.synthetic import beats as synth_beats, noise as synth_noise, rhythm as synth_rhythm
from heartbeatai.data.synthetic.dipole import electrode_projection, form_leads
from heartbeatai.data.synthetic.domains import DomainProfile
from heartbeatai.data.synthetic.labels import ATRIAL_RHYTHM, RHYTHMS, WITH_P_WAVES, corrupt_labels, draw_labels
from heartbeatai.data.synthetic.rhythm import PAC, PVC
from heartbeatai.data.synthetic.device_mark import add_marks
from heartbeatai.data.synthetic.shortcut import reported_age

_AF_VECTOR = np.array([-0.3, 0.3, -0.9]) / np.linalg.norm([-0.3, 0.3, -0.9])  # seen best in V1
_FLUTTER_VECTOR = np.array([0.15, 0.95, 0.25]) / np.linalg.norm([0.15, 0.95, 0.25])  # inferior leads


@dataclass(frozen=True)
class SyntheticRecord:
    signal: np.ndarray  # (samples, 12) float32, mV
    labels: frozenset[str]  # true diagnoses (abbreviations)
    header_labels: frozenset[str]  # what the header says (after label noise)
    age: int  # as the hospital recorded it (shortcut.py may move it; the physiology used the true one)
    sex: str


def _pick(shares: dict[int, float], rng: np.random.Generator) -> int:
    keys = list(shares)
    return int(keys[rng.choice(len(keys), p=np.array([shares[k] for k in keys]) / sum(shares.values()))])


def synthesize_record(profile: DomainProfile, fs: int, seconds: float, rng: np.random.Generator) -> SyntheticRecord:
    age = int(np.clip(rng.normal(profile.age_mean, profile.age_sd), 18, 95))
    female = bool(rng.random() < profile.female_share)
    labels = draw_labels(profile.prevalence, rng)
    duration = seconds * float(np.clip(np.exp(profile.length_spread * rng.standard_normal()), 0.6, 3.0))
    native_fs = _pick(profile.native_fs, rng)
    mains_hz = _pick(profile.mains_hz, rng)
    n_native = int(round(duration * native_fs))

    morphology = synth_beats.draw_morphology(labels, age, female, rng)
    if "AFL" in labels:
        beats, flutter_hz, flutter_phase = synth_rhythm.flutter_beats(duration, rng)
    else:
        rhythm = next(r for r in (*RHYTHMS, ATRIAL_RHYTHM) if r in labels)
        rate = synth_rhythm.heart_rate(rhythm, age, rng, profile.rate_overlap)
        if rhythm == "AF":
            rr = synth_rhythm.af_rr(duration, rate, rng)
        elif rhythm == "PR":
            rr = synth_rhythm.paced_rr(duration, rate)
        else:
            hrv = "junctional" if rhythm == "Brady" else "SA" if "SA" in labels else "sinus"
            rr = synth_rhythm.sinus_rr(duration, rate, rng, hrv)
        kinds = np.zeros(rr.size, dtype=np.int8)
        for abbr, kind in (("PAC", PAC), ("PVC", PVC)):
            if abbr in labels:
                # 2-4 per 10 s: a random 5 s training crop still holds one more often than not
                count = max(1, int(round(rng.integers(2, 5) * duration / 10.0)))
                rr, kinds = synth_rhythm.insert_ectopics(rr, kinds, count, kind, duration, rng)
                if not (kinds == kind).any():  # a record too short to hold one: no label without the beat
                    labels.discard(abbr)
        beats = synth_rhythm.beats_from_rr(rr, kinds, duration, rng)

    # Atrial activity: P waves for the rhythms that have them; none in AF and flutter
    # (their own waves below), in a junctional escape rhythm or under ventricular pacing.
    atrial_p = bool(set(WITH_P_WAVES) & labels)
    centres, sigmas, vectors = synth_beats.beat_waves(beats, morphology, atrial_p)
    dipole = synth_beats.render_dipole(centres, sigmas, vectors, n_native, native_fs)
    if "AF" in labels or "AFL" in labels:
        t = np.arange(n_native) / native_fs
        waves = (synth_rhythm.fibrillation_waves(t, rng) if "AF" in labels
                 else synth_rhythm.flutter_waves(t, flutter_hz, flutter_phase))
        vector = rng.uniform(0.05, 0.12) * _AF_VECTOR if "AF" in labels else rng.uniform(0.12, 0.22) * _FLUTTER_VECTOR
        dipole += np.outer(waves, vector)

    angles = np.asarray(profile.placement_deg) + profile.placement_jitter_deg * rng.standard_normal(3)
    # float32 from here on: the files hold int16 microvolts
    electrodes = dipole.astype(np.float32) @ electrode_projection(angles, 1.0, profile.precordial_shift).astype(np.float32)
    electrodes += synth_noise.electrode_noise(
        n_native, native_fs, mains_hz=mains_hz, mains_mv=profile.mains_mv, emg_mv=profile.emg_mv,
        wander_mv=profile.wander_mv, motion=bool(rng.random() < profile.motion_rate), rng=rng,
        contact_mv=profile.contact_mv)
    electrodes = synth_noise.acquisition_filter(electrodes, native_fs, profile.highpass_hz, profile.lowpass_hz,
                                                int(round(profile.lowpass_order)))
    electrodes = synth_noise.resample(electrodes, native_fs, fs)
    leads = form_leads(electrodes) * np.float32(profile.gain)
    header_labels = frozenset(corrupt_labels(labels, profile.label_noise, rng))
    return SyntheticRecord(
        signal=add_marks(leads, fs, labels, profile.device_marks, rng),  # drawn last: nothing else moves
        labels=frozenset(labels),
        header_labels=header_labels,
        age=reported_age(age, labels, profile.age_bands),  # the physiology kept the patient's own
        sex="Female" if female else "Male",
    )
