"""Beat morphology: a vectorcardiogram built from Gaussian waves, in the manner of
McSharry's ECGSYN (IEEE TBME 2003) and Sameni's multichannel extension (EURASIP JASP
2007). Each wave of a beat is a Gaussian in time with a 3-D dipole amplitude; the
12-lead shapes of each class follow from the wave's direction, not from per-lead
templates:

- normal conduction: a small rightward-anterior septal q, the main R along the frontal
  axis and posterior, a terminal rightward-superior S (QRS ~ 90 ms);
- RBBB: normal initial forces plus a late, slow rightward-anterior R' (rsR' in V1, wide
  S in I and V6), T discordant in V1-V2; IRBBB: the same with a smaller, earlier R'
  (QRS 100-115 ms);
- BBB (unspecified): the "masquerading" block, right-bundle terminal forces in the chest
  leads (R' in V1) but leftward in the limb leads (no S in I or aVL), QRS >= 120 ms;
- LBBB: no septal q, a broad two-humped leftward-posterior R (QS in V1, broad notched R
  in I and V6), T opposite to the QRS;
- NSIVCB: the normal sequence slowed throughout (every wave later and broader, QRS
  120-140 ms) with no bundle-branch pattern;
- LAnFB: initial forces inferior-rightward (q in I/aVL, r in II/III/aVF), the main
  forces superior-leftward (axis -55..-85, qR in aVL, rS inferior);
- QAb: a broad, deep initial Q directed superiorly (an old inferior infarct: Q >= 40 ms
  in II, III, aVF);
- PRWP: the main R turned posteriorly, so R stays small up to V3-V4;
- paced: a pacing spike, then a broad QRS from the right-ventricular apex (left-superior
  axis, two broad halves), T opposite;
- PVC: one broad wave in a direction foreign to the record's QRS and a discordant T.

Frontal axis targets are set in ECG terms (net QRS in I and aVF, the clinician's
hexaxial reading) by solving Dower's limb-lead rows for the dipole direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from heartbeatai.data.synthetic.dipole import DOWER
from heartbeatai.data.synthetic.rhythm import PAC, PVC, BeatTrain

NORMAL, RBBB, IRBBB, LBBB, BBB, NSIVCB, PACED = "normal", "RBBB", "IRBBB", "LBBB", "BBB", "NSIVCB", "paced"
_CONDUCTION_OF = (("PR", PACED), ("RBBB", RBBB), ("IRBBB", IRBBB), ("LBBB", LBBB), ("BBB", BBB), ("NSIVCB", NSIVCB))

# Axis ranges (degrees, hexaxial) drawn per class, with margins from the clinical
# boundaries at -30 and +90 wide enough for the q and S waves (which pull the measured
# net-QRS axis ~15 degrees leftward), placement jitter and the domains' rotations.
AXIS_RANGES = {"normal": (10.0, 70.0), "LAD": (-85.0, -50.0), "RAD": (105.0, 150.0), "LAnFB": (-85.0, -60.0)}
# PR: IAVB and LPR are one finding under two sources' codes; they are kept apart by
# degree so that each code is a function of the signal.
PR_RANGES = {"normal": (0.12, 0.17), "LPR": (0.21, 0.25), "IAVB": (0.28, 0.36)}
QTC_RANGES = {"normal": (0.36, 0.42), "LQT": (0.50, 0.60)}
NSIVCB_STRETCH = (1.55, 1.8)

_AVF_ROW = DOWER[1] - DOWER[0] / 2
_PVC_WAVES = ((0.0, 0.02), (0.05, 0.02))  # (offset, sigma) of each half
_SIGMA_P, _SIGMA_T, _SIGMA_ST, _SIGMA_SPIKE = 0.02, 0.042, 0.045, 0.0015


@dataclass(frozen=True)
class Morphology:
    """One record's wave shapes: everything a beat needs besides its timing."""

    conduction: str
    qrs_offsets: np.ndarray  # (k,) s from the R reference time
    qrs_sigmas: np.ndarray  # (k,)
    qrs_vectors: np.ndarray  # (k, 3) mV
    qrs_onset: float  # s from the R reference time (negative)
    t_vector: np.ndarray  # (3,)
    t_sigma: float  # s: broader in long QT
    p_vector: np.ndarray  # (3,) the record's atrial P (sinus, or ectopic for ARH)
    pac_p_vector: np.ndarray  # (3,) ectopic atrial P of premature beats
    pvc_vectors: np.ndarray  # (2, 3) ectopic ventricular QRS: early and late halves
    st_vector: np.ndarray  # (3,) ST-segment shift (zero unless STE/STD)
    spike_vector: np.ndarray  # (3,) pacing spike (zero unless paced)
    qrs_scale: float
    pr: float  # s, P onset to QRS onset
    qtc: float  # s, Bazett-corrected QT


def _r_direction(axis_deg: float, posterior: float) -> np.ndarray:
    """Unit dipole whose net projection on I and aVF reads as `axis_deg` (hexaxial)."""
    theta = np.deg2rad(axis_deg)
    target = np.array([np.cos(theta), np.sin(theta) * np.sqrt(3) / 2])
    rows = np.stack([DOWER[0], _AVF_ROW])
    xy = np.linalg.solve(rows[:, :2], target - rows[:, 2] * posterior)
    vector = np.array([xy[0], xy[1], posterior])
    return vector / np.linalg.norm(vector)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _qrs_waves(conduction: str, labels: set[str], r_vector: np.ndarray, s: float,
               rng: np.random.Generator) -> list[tuple[float, float, np.ndarray]]:
    """(offset s, sigma s, dipole mV) of each QRS wave of a conducted beat."""
    r_unit = _unit(r_vector)
    septal = ("q", -0.025, 0.008, s * np.array([-0.15, 0.0, -0.12]))
    if "LAnFB" in labels:  # the left anterior fascicle is blocked: the first forces go inferiorly
        septal = ("q", -0.028, 0.009, s * np.array([-0.12, 0.32, -0.05]))
    if "QAb" in labels:  # forces away from a scarred inferior wall: a broad superior Q
        septal = ("q", -0.034, 0.014, s * np.array([-0.05, -0.6, 0.05]))
    r = ("R", 0.0, 0.012, r_vector)
    terminal = ("S", 0.028, 0.009, s * (-0.35 * r_unit + np.array([-0.1, -0.15, 0.25])))
    if conduction == PACED:
        paced = rng.uniform(1.2, 1.7) * s * _unit(np.array([0.55, -0.7, 0.45]) + 0.1 * rng.normal(size=3))
        late = 0.9 * np.linalg.norm(paced) * _unit(paced + np.array([0.3, 0.3, 0.2]))
        return [("V1", -0.01, 0.022, paced), ("V2", 0.055, 0.024, late)]
    if conduction == LBBB:
        return [("R1", -0.012, 0.017, 0.85 * r_vector), ("R2", 0.042, 0.017, r_vector)]
    waves = [septal, r]
    if conduction == RBBB:
        waves += [("S", 0.03, 0.011, terminal[3]), ("R'", 0.072, 0.015, s * np.array([-0.25, 0.05, -0.8]))]
    elif conduction == IRBBB:
        waves += [("S", 0.028, 0.010, terminal[3]), ("R'", 0.056, 0.011, s * np.array([-0.2, 0.03, -0.65]))]
    elif conduction == BBB:
        waves = [septal, ("R", 0.0, 0.015, r_vector), ("R'", 0.072, 0.016, s * np.array([0.8, -0.1, -1.1]))]
    else:
        waves.append(terminal)
    if conduction == NSIVCB:  # slow conduction everywhere: the same sequence, stretched in time
        k = rng.uniform(*NSIVCB_STRETCH)
        waves = [(name, k * offset, k * sigma, vector / np.sqrt(k)) for name, offset, sigma, vector in waves]
    return waves


def draw_morphology(labels: set[str], age: float, female: bool, rng: np.random.Generator) -> Morphology:
    """Record-level wave parameters from its (clean) labels and the patient."""
    conduction = next((kind for abbr, kind in _CONDUCTION_OF if abbr in labels), NORMAL)
    axis_class = next((a for a in ("LAnFB", "LAD", "RAD") if a in labels), "normal")
    axis = rng.uniform(*AXIS_RANGES[axis_class])
    posterior = rng.uniform(0.1, 0.35)
    if conduction == LBBB:
        posterior = rng.uniform(0.7, 1.0)
    elif "PRWP" in labels:
        posterior = rng.uniform(1.2, 1.6)
    r_dir = _r_direction(axis, posterior)
    # Voltage falls with age and is lower in women (population ECG norms).
    qrs_scale = rng.lognormal(0.0, 0.12) * (1.25 - 0.005 * age) * (0.88 if female else 1.0)
    if "LQRSV" in labels:
        qrs_scale *= rng.uniform(0.22, 0.32)
    elif conduction == LBBB:
        qrs_scale *= 1.2
    waves = _qrs_waves(conduction, labels, 1.4 * qrs_scale * r_dir, qrs_scale, rng)
    offsets = np.array([w[1] for w in waves])
    sigmas = np.array([w[2] for w in waves])
    vectors = np.stack([w[3] for w in waves])
    net_qrs = vectors.sum(axis=0)

    t_dir = _unit(0.5 * r_dir + np.array([0.55, 0.45, -0.45]))
    t_amp = rng.uniform(0.3, 0.45)
    if conduction in (LBBB, PACED):  # secondary repolarisation: T opposite the QRS
        t_dir, t_amp = -_unit(net_qrs), 0.35
    elif conduction in (RBBB, IRBBB, BBB):  # T opposite the late right-ventricular forces
        t_dir = _unit(t_dir + np.array([0.1, 0.0, 0.3 if conduction == IRBBB else 0.6]))
    t_sigma = _SIGMA_T
    if "LQT" in labels:  # long-QT repolarisation is slow as well as late: a broad-based, lower T
        t_sigma, t_amp = _SIGMA_T * rng.uniform(1.3, 1.5), t_amp * 0.8
    if "TInv" in labels:
        t_dir = -t_dir
    elif "TAb" in labels:
        t_amp *= rng.uniform(0.1, 0.25)  # flattened, still above the noise of a median beat

    st_vector = np.zeros(3)
    if "STE" in labels or "STD" in labels:
        st_vector = rng.uniform(0.12, 0.2) * _unit(np.array([0.2, 0.8, -0.6]))
        st_vector *= -1.0 if "STD" in labels else 1.0
    spike = np.zeros(3)
    if conduction == PACED:  # a unipolar pacing artefact: large, a few milliseconds
        spike = rng.uniform(4.0, 8.0) * _unit(rng.normal(size=3))

    # A ventricular focus activates the ventricles slowly and in an order of its own:
    # two broad halves in directions unrelated to the sinus QRS, notched where they meet.
    pvc_early = _unit(rng.normal(size=3))
    pvc_late = _unit(pvc_early + rng.normal(size=3))
    sinus_p = np.array([0.6, 0.75, 0.1])
    low_atrial_p = np.array([0.35, -0.85, 0.15])  # ARH: atria activated from below
    p_direction = low_atrial_p if "ARH" in labels else sinus_p
    pr_class = next((c for c in ("IAVB", "LPR") if c in labels), "normal")
    return Morphology(
        conduction=conduction,
        qrs_offsets=offsets,
        qrs_sigmas=sigmas,
        qrs_vectors=vectors,
        qrs_onset=float(np.min(offsets - 3.0 * sigmas)),
        t_vector=t_amp * t_dir,
        t_sigma=t_sigma,
        p_vector=rng.uniform(0.12, 0.2) * _unit(p_direction + 0.1 * rng.normal(size=3)),
        pac_p_vector=rng.uniform(0.08, 0.14) * _unit(np.array([0.3, -0.8, 0.2]) + 0.2 * rng.normal(size=3)),
        pvc_vectors=rng.uniform(1.2, 1.8) * np.stack([pvc_early, 0.8 * pvc_late]),
        st_vector=st_vector,
        spike_vector=spike,
        qrs_scale=qrs_scale,
        pr=rng.uniform(*PR_RANGES[pr_class]),
        qtc=rng.uniform(*QTC_RANGES["LQT" if "LQT" in labels else "normal"]) + (0.01 if female else 0.0),
    )


def beat_waves(beats: BeatTrain, m: Morphology, atrial_p: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every Gaussian of every beat: (centres s, sigmas s, dipoles (waves, 3) mV)."""
    centres, sigmas, vectors = [], [], []

    def add(times: np.ndarray, sigma: float, vector: np.ndarray) -> None:
        if times.size:
            centres.append(times)
            sigmas.append(np.full(times.size, sigma))
            vectors.append(np.broadcast_to(vector, (times.size, 3)))

    r = beats.r_times
    ventricular = beats.kinds == PVC
    supra = ~ventricular
    for offset, sigma, vector in zip(m.qrs_offsets, m.qrs_sigmas, m.qrs_vectors):
        add(r[supra] + offset, sigma, vector)
    for (offset, sigma), vector in zip(_PVC_WAVES, m.pvc_vectors):
        add(r[ventricular] + offset, sigma, vector)
    if np.any(m.spike_vector):
        add(r[supra] + m.qrs_onset - 0.004, _SIGMA_SPIKE, m.spike_vector)

    # QT by Bazett on the preceding RR; the T wave ends 2.5 sigma after its peak.
    qt = m.qtc * np.sqrt(np.clip(beats.rr_before, 0.3, 2.0))
    t_peak = r + m.qrs_onset + qt - 2.5 * m.t_sigma
    add(t_peak[supra], m.t_sigma, m.t_vector)
    add(t_peak[ventricular] + 0.03, _SIGMA_T * 1.2, -0.3 * m.pvc_vectors.sum(axis=0))
    if np.any(m.st_vector):
        add(r[supra] + 0.11, _SIGMA_ST, m.st_vector)

    if atrial_p:
        # P onset sits PR before QRS onset; its peak 2.5 sigma later.
        p_peak = r + m.qrs_onset - m.pr + 2.5 * _SIGMA_P
        sinus = beats.kinds == 0
        add(p_peak[sinus], _SIGMA_P, m.p_vector)
        add(p_peak[beats.kinds == PAC] + 0.02, _SIGMA_P, m.pac_p_vector)
    return np.concatenate(centres), np.concatenate(sigmas), np.concatenate(vectors)


def render_dipole(centres: np.ndarray, sigmas: np.ndarray, vectors: np.ndarray, n: int, fs: float) -> np.ndarray:
    """(n, 3) dipole: each Gaussian evaluated on +-4 sigma around its centre only."""
    half = int(np.ceil(4 * sigmas.max() * fs))
    offsets = np.arange(-half, half + 1)
    idx = np.rint(centres * fs).astype(np.int64)[:, None] + offsets[None, :]
    z = (idx / fs - centres[:, None]) / sigmas[:, None]
    weight = np.exp(-0.5 * z * z)
    inside = (idx >= 0) & (idx < n) & (np.abs(z) <= 4.0)
    idx, weight = idx[inside], weight[inside]
    which = np.nonzero(inside)[0]
    dipole = np.empty((n, 3))
    for axis in range(3):
        dipole[:, axis] = np.bincount(idx, weights=weight * vectors[which, axis], minlength=n)
    return dipole
