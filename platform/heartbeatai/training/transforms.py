"""Trial-time signal preprocessing: band-pass and per-lead normalisation (numpy only).

Prepared datasets store signals unfiltered (DESIGN.md): the band and the normalisation
are trial settings, so a search can vary them without preparing again. Filtering is
zero-phase (forward-backward) so wave onsets do not shift, which matters for
conduction classes (IAVB, LQT) whose labels are timing.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import signal as sps

# Butterworth order per pass; sosfiltfilt doubles it. Four is the usual ECG choice:
# steep enough to remove baseline wander and mains, short enough to ring little.
_ORDER = 4
# Context read on each side of a window while filtering, in periods of the lowest
# cutoff: the filter's start-up transient then falls outside the window. Three periods
# (6 s at 0.5 Hz) leave an error below 0.1 % of the signal's range against filtering
# the whole record, at a third of its cost for a 10 s crop of a 60 s record.
FILTER_MARGIN_PERIODS = 3.0
_EPS = 1e-6


@functools.lru_cache(maxsize=64)
def bandpass_sos(fs: float, low_hz: float | None, high_hz: float | None) -> np.ndarray | None:
    """Second-order sections of the Butterworth band (or high-/low-pass); None when off."""
    nyquist = fs / 2.0
    if high_hz is not None and high_hz >= nyquist:
        raise ValueError(
            f"preprocess.bandpass_high_hz: {high_hz} Hz is not below the Nyquist frequency "
            f"({nyquist:g} Hz) of this {fs:g} Hz dataset"
        )
    if low_hz is not None and high_hz is not None:
        return sps.butter(_ORDER, (low_hz, high_hz), btype="bandpass", fs=fs, output="sos")
    if low_hz is not None:
        return sps.butter(_ORDER, low_hz, btype="highpass", fs=fs, output="sos")
    if high_hz is not None:
        return sps.butter(_ORDER, high_hz, btype="lowpass", fs=fs, output="sos")
    return None


class SignalTransform:
    """Band-pass then per-lead z-score of a (12, T) float32 window.

    Picklable and stateless, so DataLoader and Ray workers each hold a copy.
    """

    def __init__(
        self,
        fs: float,
        *,
        bandpass_low_hz: float | None,
        bandpass_high_hz: float | None,
        normalize: str,
    ) -> None:
        # The band edges and `normalize` are checked by PreprocessConfig; the Nyquist
        # check below is not a repeat: it needs the dataset's rate, which the config lacks.
        self.fs = float(fs)
        self.low_hz = bandpass_low_hz
        self.high_hz = bandpass_high_hz
        self.normalize = normalize
        bandpass_sos(self.fs, self.low_hz, self.high_hz)  # fail at construction, not mid-epoch

    @property
    def margin(self) -> int:
        """Samples of context to read on each side of a window before `filter`."""
        cutoffs = [f for f in (self.low_hz, self.high_hz) if f is not None]
        if not cutoffs:
            return 0
        return int(round(FILTER_MARGIN_PERIODS / min(cutoffs) * self.fs))

    def filter(self, x: np.ndarray) -> np.ndarray:
        sos = bandpass_sos(self.fs, self.low_hz, self.high_hz)
        if sos is None:
            return x
        # sosfiltfilt pads by reflection; too short a signal cannot take its default pad.
        padlen = min(3 * (2 * len(sos) + 1), x.shape[-1] - 1)
        return sps.sosfiltfilt(sos, x, axis=-1, padlen=max(padlen, 0)).astype(np.float32)

    def standardize(self, x: np.ndarray) -> np.ndarray:
        if self.normalize == "none":
            return x
        mean = x.mean(axis=-1, keepdims=True)
        std = x.std(axis=-1, keepdims=True)
        # A flat lead (lead off, zero-padding) stays zero instead of blowing up.
        return ((x - mean) / np.maximum(std, _EPS)).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.standardize(self.filter(x))
