"""Cardiac dipole -> electrode potentials -> the 12 standard leads.

The heart is a single moving dipole (a vectorcardiogram, VCG) in Frank coordinates:
X to the patient's left, Y to the feet, Z to the back. Its projection onto the leads
uses Dower's VCG-to-ECG transform (Dower et al., Clin. Cardiol. 1980), whose rows are
the lead vectors of I, II and V1-V6; the inverse Dower matrix of Edenbrandt & Pahlm
(1988) is its well-known counterpart for the opposite direction.

Noise belongs to electrodes, not leads, so the projection goes to the nine electrodes
(RA, LA, LL, V1-V6) first. Potentials are defined up to a constant; we fix it by
putting Wilson's central terminal at zero (RA + LA + LL = 0), which gives
RA = -(I + II)/3, LA = (2I - II)/3, LL = (2II - I)/3 and Vi = the precordial lead.
The 12 leads are then formed from electrodes exactly as an electrocardiograph does,
so III = II - I, aVR = -(I + II)/2, ... hold for any electrode noise.
"""

from __future__ import annotations

import numpy as np

from heartbeatai.ecg import LEADS

ELECTRODES = ("RA", "LA", "LL", "V1", "V2", "V3", "V4", "V5", "V6")

# Dower 1980, columns X, Y, Z; rows I, II, V1..V6.
DOWER = np.array(
    [
        [0.632, -0.235, 0.059],  # I
        [0.235, 1.066, -0.132],  # II
        [-0.515, 0.157, -0.917],  # V1
        [0.044, 0.164, -1.387],  # V2
        [0.882, 0.098, -1.277],  # V3
        [1.213, 0.127, -0.601],  # V4
        [1.125, 0.127, -0.086],  # V5
        [0.831, 0.076, 0.230],  # V6
    ]
)


def _electrode_lead_vectors() -> np.ndarray:
    """(9, 3): the lead vector of each electrode against Wilson's central terminal."""
    lead_i, lead_ii = DOWER[0], DOWER[1]
    limbs = np.stack([-(lead_i + lead_ii) / 3, (2 * lead_i - lead_ii) / 3, (2 * lead_ii - lead_i) / 3])
    return np.vstack([limbs, DOWER[2:]])


def _lead_formation() -> np.ndarray:
    """(9, 12): electrode potentials -> leads, the electrocardiograph's own arithmetic."""
    ra, la, ll = np.eye(9)[:3]
    wilson = (ra + la + ll) / 3
    rows = [
        la - ra,  # I
        ll - ra,  # II
        ll - la,  # III
        ra - (la + ll) / 2,  # aVR
        la - (ra + ll) / 2,  # aVL
        ll - (ra + la) / 2,  # aVF
    ]
    rows += [np.eye(9)[3 + k] - wilson for k in range(6)]
    return np.stack(rows, axis=1)


ELECTRODE_LEAD_VECTORS = _electrode_lead_vectors()
LEAD_FORMATION = _lead_formation()


def rotation(angles_deg: np.ndarray) -> np.ndarray:
    """Rotation matrix from (about X, about Y, about Z) angles in degrees.

    Rotating the dipole is how we model electrode placement and heart position: a
    frontal-plane rotation (about Z) moves the electrical axis, one about Y moves the
    precordial transition.
    """
    ax, ay, az = np.deg2rad(angles_deg)
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def displaced_chest_electrodes(shift: float) -> np.ndarray:
    """(9, 3) electrode lead vectors with V1..V6 moved `shift` electrode spacings along
    their row (positive: laterally, towards V6), interpolating between neighbouring
    electrodes' lead vectors and extrapolating past the ends.

    Chest electrodes are the ones most often misplaced, and consistently so within a
    hospital's practice (e.g. V1/V2 one space too high or too far apart); moving them
    changes how the precordial leads relate to each other and to the limb leads, which
    a per-lead normalisation cannot undo.
    """
    if shift == 0.0:
        return ELECTRODE_LEAD_VECTORS
    chest = ELECTRODE_LEAD_VECTORS[3:]
    position = np.arange(6) + shift
    lower = np.clip(np.floor(position).astype(int), 0, 4)
    fraction = (position - lower)[:, None]
    moved = (1 - fraction) * chest[lower] + fraction * chest[lower + 1]
    return np.vstack([ELECTRODE_LEAD_VECTORS[:3], moved])


def electrode_projection(angles_deg: np.ndarray, gain: float, precordial_shift: float = 0.0) -> np.ndarray:
    """(3, 9): dipole (rows X, Y, Z) -> electrode potentials, rotated and scaled."""
    return gain * (displaced_chest_electrodes(precordial_shift) @ rotation(angles_deg)).T


def form_leads(electrodes: np.ndarray) -> np.ndarray:
    """(samples, 9) electrode potentials -> (samples, 12) leads in standard order."""
    return electrodes @ LEAD_FORMATION.astype(electrodes.dtype, copy=False)  # no mixed-type product


def frontal_axis_deg(vector: np.ndarray) -> float:
    """Frontal-plane angle of a dipole direction (0 = leftward, +90 = to the feet)."""
    return float(np.degrees(np.arctan2(vector[1], vector[0])))
