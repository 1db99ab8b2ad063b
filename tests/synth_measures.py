"""Independent ECG measurements for the synthetic-benchmark tests.

Nothing here reads the generator's parameters: beats are found with scipy's peak
detection on a QRS-band energy envelope, and intervals come from simple delineation
of the median beat (spatial velocity thresholds for the QRS, the lead-II maximum
before it for the P wave), the way a basic ECG analysis program would measure them.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def _filter(x: np.ndarray, fs: float, low: float, high: float) -> np.ndarray:
    sos = signal.butter(2, [low, min(high, 0.45 * fs)], "bandpass", fs=fs, output="sos")
    return signal.sosfiltfilt(sos, x, axis=0)


def r_peaks(ecg: np.ndarray, fs: float) -> np.ndarray:
    """Sample indices of QRS complexes (Pan-Tompkins-like energy envelope + find_peaks)."""
    band = _filter(ecg, fs, 5.0, 25.0)
    energy = np.sum(np.diff(band, axis=0) ** 2, axis=1)
    envelope = np.convolve(energy, np.ones(int(0.08 * fs)) / int(0.08 * fs), mode="same")
    height = 0.08 * np.percentile(envelope, 99)  # low enough for broad, slow PVCs
    peaks, _ = signal.find_peaks(envelope, height=height, distance=int(0.22 * fs))
    return peaks


def rr_intervals(ecg: np.ndarray, fs: float) -> np.ndarray:
    return np.diff(r_peaks(ecg, fs)) / fs


def heart_rate(ecg: np.ndarray, fs: float) -> float:
    return 60.0 / float(np.median(rr_intervals(ecg, fs)))


def rr_irregularity(ecg: np.ndarray, fs: float) -> float:
    """RMSSD of the RR series over its mean: ~0.02 for sinus rhythm, 0.2+ for AF."""
    rr = rr_intervals(ecg, fs)
    return float(np.sqrt(np.mean(np.diff(rr) ** 2)) / np.mean(rr))


def median_beat(ecg: np.ndarray, fs: float, before: float = 0.45, after: float = 0.55) -> tuple[np.ndarray, int]:
    """(window, index of the detection point) median over beats, after a 0.5-40 Hz band-pass."""
    x = _filter(ecg, fs, 0.5, 40.0)
    b, a = int(before * fs), int(after * fs)
    peaks = [p for p in r_peaks(ecg, fs) if p - b >= 0 and p + a <= x.shape[0]]
    beats = np.stack([x[p - b:p + a] for p in peaks])
    return np.median(beats, axis=0), b


def qrs_bounds(beat: np.ndarray, centre: int, fs: float) -> tuple[int, int]:
    """QRS onset and offset: where the spatial velocity leaves/returns below 12% of its peak."""
    velocity = np.sqrt(np.sum(np.diff(beat, axis=0) ** 2, axis=1))
    lo, hi = centre - int(0.09 * fs), centre + int(0.12 * fs)
    window = velocity[lo:hi]
    above = np.nonzero(window > 0.12 * window.max())[0]
    return lo + int(above[0]), lo + int(above[-1]) + 1


def qrs_duration_ms(ecg: np.ndarray, fs: float) -> float:
    beat, centre = median_beat(ecg, fs)
    onset, offset = qrs_bounds(beat, centre, fs)
    return 1000.0 * (offset - onset) / fs


def pr_interval_ms(ecg: np.ndarray, fs: float) -> float:
    """P onset to QRS onset, with the P onset taken 50 ms (half a normal P wave) before
    the lead-II P peak (upright or inverted) found in the 60-300 ms before the QRS."""
    return _pr_interval_ms(*median_beat(ecg, fs), fs)


def _pr_interval_ms(beat: np.ndarray, centre: int, fs: float) -> float:
    onset, _ = qrs_bounds(beat, centre, fs)
    lead_ii = beat[:, LEADS.index("II")]
    lo, hi = max(0, onset - int(0.34 * fs)), onset - int(0.06 * fs)
    window = lead_ii[lo:hi] - lead_ii[onset - int(0.015 * fs):onset].mean()  # against the PR segment
    p_peak = lo + int(np.argmax(np.abs(window)))
    return 1000.0 * (onset - p_peak) / fs + 50.0


def frontal_axis_deg(ecg: np.ndarray, fs: float) -> float:
    """Hexaxial axis from the net QRS area in I and aVF."""
    return _frontal_axis_deg(*median_beat(ecg, fs), fs)


def _frontal_axis_deg(beat: np.ndarray, centre: int, fs: float) -> float:
    onset, offset = qrs_bounds(beat, centre, fs)
    baseline = beat[onset - int(0.03 * fs):onset].mean(axis=0)
    area = (beat[onset:offset] - baseline).sum(axis=0)
    return float(np.degrees(np.arctan2(2 * area[LEADS.index("aVF")] / np.sqrt(3), area[LEADS.index("I")])))


def qrs_peak_to_peak_mv(ecg: np.ndarray, fs: float) -> np.ndarray:
    """(12,) QRS peak-to-peak amplitude per lead on the median beat."""
    beat, centre = median_beat(ecg, fs)
    onset, offset = qrs_bounds(beat, centre, fs)
    qrs = beat[onset:offset]
    return qrs.max(axis=0) - qrs.min(axis=0)


def atrial_activity_ratio(ecg: np.ndarray, fs: float, lead: str = "V1") -> float:
    """4-9 Hz power left in `lead` after QRST cancellation (each beat minus the median
    beat, the standard way to expose AF's f-waves), over the median beat's power."""
    return _atrial_activity_ratio(_filter(ecg, fs, 0.5, 40.0)[:, LEADS.index(lead)], r_peaks(ecg, fs), fs)


def _atrial_activity_ratio(x: np.ndarray, peaks: np.ndarray, fs: float) -> float:
    before, after = int(0.25 * fs), int(0.45 * fs)
    peaks = [p for p in peaks if p - before >= 0 and p + after <= x.size]
    beats = np.stack([x[p - before:p + after] for p in peaks])
    residual = (beats - np.median(beats, axis=0)).ravel()
    f, pxx = signal.welch(residual, fs=fs, nperseg=min(residual.size, int(2 * fs)))
    return float(pxx[(f >= 4) & (f <= 9)].sum() / np.var(np.median(beats, axis=0)))


def record_features(ecg: np.ndarray, fs: float) -> np.ndarray:
    """A fixed-length description of one record for simple classifiers: rhythm figures
    (rate, irregularity, RR spread), intervals, axis, per-lead R and S, initial and
    terminal QRS forces and T amplitudes, the most premature beat's timing and shape,
    atrial activity, the largest spike residual (pacing), and the median beat at 25 Hz."""
    x = _filter(ecg, fs, 0.5, 40.0)
    peaks = r_peaks(ecg, fs)
    rr = np.diff(peaks) / fs
    before, after = int(0.45 * fs), int(0.75 * fs)
    inner = [i for i, p in enumerate(peaks) if p - before >= 0 and p + after <= x.shape[0]]
    beats = np.stack([x[peaks[i] - before:peaks[i] + after] for i in inner])
    beat = np.median(beats, axis=0)
    onset, offset = qrs_bounds(beat, before, fs)
    baseline = beat[max(0, onset - int(0.03 * fs)):onset].mean(axis=0)
    qrs = beat[onset:offset] - baseline
    t_window = beat[offset + int(0.05 * fs):offset + int(0.3 * fs)] - baseline
    t_amplitude = np.where(t_window.max(axis=0) > -t_window.min(axis=0), t_window.max(axis=0), t_window.min(axis=0))
    median_rr = float(np.median(rr))
    # T peak: the largest spatial magnitude between the QRS and 70% of the cycle (before the next P)
    t_end = min(beat.shape[0], before + int(0.7 * median_rr * fs))
    late = np.linalg.norm(beat[offset + int(0.05 * fs):t_end] - baseline, axis=1)
    t_peak = offset + int(0.05 * fs) + int(np.argmax(late)) if late.size else offset

    # The most premature beat: how early, how long the pause after it, and how unlike the
    # median beat its QRS is (a PVC differs, a PAC does not).
    k = int(np.argmin(rr)) if rr.size else 0
    prematurity = rr[k] / median_rr if rr.size else 1.0
    pause = (rr[k] + rr[k + 1]) / (2 * median_rr) if k + 1 < rr.size else 1.0
    ectopic = k + 1
    qrs_slice = slice(onset, offset)
    if ectopic in inner:
        candidate = beats[inner.index(ectopic)][qrs_slice].ravel()
        shape = float(np.corrcoef(candidate, beat[qrs_slice].ravel())[0, 1])
    else:
        shape = 1.0
    lead_ii = beat[:, LEADS.index("II")] - baseline[LEADS.index("II")]
    p_window = lead_ii[max(0, onset - int(0.3 * fs)):onset - int(0.06 * fs)]
    decimated = signal.resample_poly(beat, 25, int(fs), axis=0)
    irregularity = float(np.sqrt(np.mean(np.diff(rr) ** 2)) / np.mean(rr)) if rr.size > 1 else 0.0
    spread = float(np.subtract(*np.percentile(rr, [90, 10])) / np.mean(rr)) if rr.size > 1 else 0.0
    spikes = np.abs(ecg - despiked(ecg)).max()
    return np.concatenate([
        [60.0 / median_rr, irregularity, spread, prematurity, pause, shape,
         1000.0 * (offset - onset) / fs, _pr_interval_ms(beat, before, fs), p_window.max(), p_window.min(),
         _frontal_axis_deg(beat, before, fs), (t_peak - onset) / fs / np.sqrt(median_rr),
         _atrial_activity_ratio(x[:, LEADS.index("V1")], peaks, fs),
         _atrial_activity_ratio(x[:, LEADS.index("II")], peaks, fs), spikes],
        qrs.max(axis=0), qrs.min(axis=0), qrs[:int(0.03 * fs)].mean(axis=0), qrs[-int(0.04 * fs):].mean(axis=0),
        t_amplitude, decimated.ravel(),
    ])


def st_level_mv(ecg: np.ndarray, fs: float, lead: str = "II") -> float:
    """ST level 60 ms after the QRS offset (J + 60 ms) against the PR segment."""
    beat, centre = median_beat(ecg, fs)
    onset, offset = qrs_bounds(beat, centre, fs)
    k = LEADS.index(lead)
    baseline = beat[onset - int(0.03 * fs):onset, k].mean()
    return float(beat[offset + int(0.06 * fs), k] - baseline)


def t_wave_mv(ecg: np.ndarray, fs: float, lead: str = "V5") -> float:
    """Signed T amplitude: the larger excursion 50-300 ms after the QRS, against the PR segment."""
    beat, centre = median_beat(ecg, fs)
    onset, offset = qrs_bounds(beat, centre, fs)
    k = LEADS.index(lead)
    window = beat[offset + int(0.05 * fs):offset + int(0.3 * fs), k] - beat[onset - int(0.03 * fs):onset, k].mean()
    return float(window.max() if window.max() > -window.min() else window.min())


def qt_peak_corrected_s(ecg: np.ndarray, fs: float) -> float:
    """QRS onset to T peak (spatial magnitude), Bazett-corrected by the median RR."""
    beat, centre = median_beat(ecg, fs, after=0.75)
    onset, offset = qrs_bounds(beat, centre, fs)
    rr = float(np.median(rr_intervals(ecg, fs)))
    end = min(beat.shape[0], centre + int(0.7 * rr * fs))
    baseline = beat[onset - int(0.03 * fs):onset].mean(axis=0)
    magnitude = np.linalg.norm(beat[offset + int(0.05 * fs):end] - baseline, axis=1)
    return (offset + int(0.05 * fs) + int(np.argmax(magnitude)) - onset) / fs / np.sqrt(rr)


# -- measurements for the conduction, Q-wave, R-progression, pacing and atrial classes -----


def _qrs(ecg: np.ndarray, fs: float) -> tuple[np.ndarray, int, int]:
    """(median-beat QRS against the PR-segment baseline, onset, offset) of a record."""
    beat, centre = median_beat(ecg, fs)
    onset, offset = qrs_bounds(beat, centre, fs)
    baseline = beat[onset - int(0.03 * fs):onset].mean(axis=0)
    return beat[onset:offset] - baseline, onset, offset


def terminal_qrs_mv(ecg: np.ndarray, fs: float, lead: str, ms: float = 40.0) -> float:
    """The largest excursion of the last `ms` of the QRS in `lead`, signed (R' > 0, S < 0)."""
    qrs, _, _ = _qrs(ecg, fs)
    tail = qrs[-max(1, int(ms / 1000 * fs)):, LEADS.index(lead)]
    return float(tail.max() if tail.max() > -tail.min() else tail.min())


def late_r_mv(ecg: np.ndarray, fs: float, lead: str) -> float:
    """The largest positive deflection in the second half of the QRS in `lead` (an R')."""
    qrs, _, _ = _qrs(ecg, fs)
    x = qrs[:, LEADS.index(lead)]
    return float(max(0.0, x[x.size // 2:].max()))


def terminal_area_mv(ecg: np.ndarray, fs: float, lead: str) -> float:
    """Mean of the last third of the QRS in `lead`: the sign of the terminal forces
    (a wide S reads negative, an R' positive) without hanging on one sample."""
    qrs, _, _ = _qrs(ecg, fs)
    x = qrs[:, LEADS.index(lead)]
    return float(x[-max(1, x.size // 3):].mean())


def r_amplitude_mv(ecg: np.ndarray, fs: float, lead: str) -> float:
    """The largest positive deflection of `lead` in the first 100 ms of the QRS (its R
    wave; 0 for a QS complex). The cap keeps an early T wave, which a velocity-threshold
    offset can take in, from reading as an R."""
    qrs, _, _ = _qrs(ecg, fs)
    return float(max(0.0, qrs[:int(0.1 * fs), LEADS.index(lead)].max()))


def initial_deflection(ecg: np.ndarray, fs: float, lead: str) -> tuple[float, float, float]:
    """(first wave's peak mV, its duration ms, the opposite-signed largest later peak mV) of
    `lead`'s QRS: a q then R reads (negative, ms, positive), an r then S (positive, ms, negative)."""
    qrs, _, _ = _qrs(ecg, fs)
    x = qrs[:, LEADS.index(lead)]
    threshold = 0.03  # mV: below this the trace has not left the baseline
    start = int(np.argmax(np.abs(x) > threshold)) if np.any(np.abs(x) > threshold) else 0
    sign = np.sign(x[start]) or 1.0
    end = start + int(np.argmax(sign * x[start:] <= 0)) if np.any(sign * x[start:] <= 0) else x.size
    first = sign * np.abs(x[:end]).max() if end > 0 else 0.0
    later = x[end:]
    opposite = float(later.max() if sign < 0 else later.min()) if later.size else 0.0
    return float(first), 1000.0 * end / fs, opposite


def q_wave(ecg: np.ndarray, fs: float, lead: str) -> tuple[float, float]:
    """(Q duration ms, Q depth over the R amplitude) of `lead`; (0, 0) when the QRS opens upward."""
    first, duration, later = initial_deflection(ecg, fs, lead)
    if first >= 0:
        return 0.0, 0.0
    return duration, -first / max(later, 1e-3)


def p_wave_mv(ecg: np.ndarray, fs: float, lead: str = "II") -> float:
    """Signed P amplitude of the median beat: the larger excursion 60-300 ms before the QRS
    against the PR segment (the 15 ms before the QRS; the TP segment is inside the
    previous T wave at fast rates)."""
    beat, centre = median_beat(ecg, fs)
    onset, _ = qrs_bounds(beat, centre, fs)
    x = beat[:, LEADS.index(lead)]
    window = x[onset - int(0.30 * fs):onset - int(0.06 * fs)]
    level = x[onset - int(0.015 * fs):onset].mean()
    window = window - level
    return float(window.max() if window.max() > -window.min() else window.min())


def p_before_every_qrs(ecg: np.ndarray, fs: float, lead: str = "II") -> float:
    """Share of beats with the record's P wave before them: the median of the 60-300 ms
    before each QRS is the P template (flat when there is none: AF's f-waves and noise
    average out), and a beat has the P when its own window follows the template
    (correlation > 0.5). 0 when the template is below 0.05 mV peak to peak."""
    x = _filter(ecg, fs, 0.5, 40.0)[:, LEADS.index(lead)]
    lo, hi = int(0.30 * fs), int(0.06 * fs)
    peaks = [p for p in r_peaks(ecg, fs) if p - lo >= 0]
    if len(peaks) < 2:
        return 0.0
    windows = np.stack([x[p - lo:p - hi] - x[p - lo:p - hi].mean() for p in peaks])
    template = np.median(windows, axis=0)
    if np.ptp(template) < 0.05:
        return 0.0
    return float(np.mean([np.corrcoef(w, template)[0, 1] > 0.5 for w in windows]))


def rr_relative_range(ecg: np.ndarray, fs: float) -> float:
    """Spread of the RR intervals (10th to 90th percentile) over their mean: sinus
    arrhythmia swings it by well over 10 %; percentiles keep one missed beat from counting."""
    rr = rr_intervals(ecg, fs)
    low, high = np.percentile(rr, [10, 90])
    return float((high - low) / rr.mean())


def despiked(ecg: np.ndarray, width: int = 5) -> np.ndarray:
    """The record through a `width`-sample running median: removes pacing spikes, keeps the QRS."""
    return signal.medfilt(ecg, (width, 1))


def spike_residual_mv(ecg: np.ndarray, fs: float) -> np.ndarray:
    """Per QRS, the largest departure of the record from its 5-sample running median within
    150 ms before to 50 ms after the detected QRS: a few-millisecond pacing spike stands out
    whole, while the median follows any wave the heart makes (an R wave loses ~5 %)."""
    residual = np.abs(ecg - despiked(ecg)).max(axis=1)
    before, after = int(0.15 * fs), int(0.05 * fs)
    peaks = [p for p in r_peaks(despiked(ecg), fs) if p - before >= 0 and p + after <= residual.size]
    return np.array([residual[p - before:p + after].max() for p in peaks])


def pacing_spikes(ecg: np.ndarray, fs: float, mv: float = 0.5) -> float:
    """Share of QRS complexes with a pacing spike (a spike residual of at least `mv`)."""
    residual = spike_residual_mv(ecg, fs)
    return float(np.mean(residual >= mv)) if residual.size else 0.0
