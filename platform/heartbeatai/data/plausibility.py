"""Is a record's amplitude that of an ECG in mV? Per lead and per record, from peak-to-peak.

Readers convert to mV from what a file declares, and their +-60 V bound only catches
corrupt values: CPSC2018 data stored in microvolts (a 2,132 mV peak) or a source in volts
pass it. The typical amplitude of a lead is its peak-to-peak range; the median over the
12 leads is robust to one lead gone wild or missing. A record whose median lead
peak-to-peak lies outside MEDIAN_PEAK_TO_PEAK_MV is implausible as mV (a unit error, or
no ECG at all) and is skipped by default with a one-line reason; `--keep-implausible`
keeps it, flagged. A lead whose peak-to-peak is below FLAT_LEAD_MV is flat (not recorded,
or the electrode off): such records are kept and flagged, since real releases ship them
(Ningbo JS11438 holds zeros in V1-V6) and the challenge trained and scored on them.

Calibrated on the real samples (../shared/data/ecg-samples, 243 records of every source:
tests/test_plausibility.py): their median lead peak-to-peak spans 0.50-12.4 mV, a
factor 10 above the lower bound and 1.6 below the upper one; every lead that is not
exactly flat spans at least 0.20 mV, 20 times FLAT_LEAD_MV. Microvolts read as mV land
near 1,000 mV and volts near 0.001 mV, far outside on either side. None of the samples is
skipped; JS11438 alone is flagged, for its six flat leads.
"""

from __future__ import annotations

import numpy as np

from heartbeatai.ecg import LEADS

MEDIAN_PEAK_TO_PEAK_MV = (0.05, 20.0)
FLAT_LEAD_MV = 0.01  # 10 uV: ten steps of the challenge's 1 uV resolution

OK = "ok"
FLAT_LEADS = "flat_leads"  # kept by default
IMPLAUSIBLE_AMPLITUDE = "implausible_amplitude"  # skipped by default
QUALITIES = (OK, FLAT_LEADS, IMPLAUSIBLE_AMPLITUDE)


def thresholds() -> dict:
    """What the manifest and the resume parameters record of this check."""
    return {"median_peak_to_peak_mv": list(MEDIAN_PEAK_TO_PEAK_MV), "flat_lead_mv": FLAT_LEAD_MV}


def peak_to_peak(signal_mv: np.ndarray) -> np.ndarray:
    """Per lead, of a (samples, 12) signal without NaN: max - min, no copy of the signal."""
    return signal_mv.max(axis=0) - signal_mv.min(axis=0)


def assess(peak_to_peak_mv: np.ndarray) -> tuple[str, str]:
    """(quality, one-line reason) of a record from its leads' peak-to-peak in mV."""
    median = float(np.median(peak_to_peak_mv))
    flat = [LEADS[i] for i in np.flatnonzero(peak_to_peak_mv < FLAT_LEAD_MV)]
    low, high = MEDIAN_PEAK_TO_PEAK_MV
    if not low <= median <= high:
        side, bound, unit = ("above", high, "microvolts read as mV?") if median > high else ("below", low, "")
        constant = int(np.count_nonzero(peak_to_peak_mv == 0))
        unit = unit or (f"{constant} of 12 leads constant" if constant > 6 else "volts read as mV?")
        return IMPLAUSIBLE_AMPLITUDE, (f"implausible amplitude for an ECG in mV: median lead peak-to-peak "
                                       f"{median:.3g} mV, {side} {bound:g} mV ({unit})")
    if flat:
        return FLAT_LEADS, f"flat lead{'s' if len(flat) > 1 else ''} {','.join(flat)}"
    return OK, ""
