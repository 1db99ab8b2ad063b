"""What the electrodes and the amplifier add to the heart's signal.

Noise is drawn per electrode (RA, LA, LL, V1-V6) before leads are formed, as in a real
recording, so the lead relations still hold and each artefact shows in exactly the leads
that use its electrode. Sources (Clifford, Azuaje & McSharry, "Advanced Methods and
Tools for ECG Data Analysis", ch. 3): baseline wander (respiration, movement; < 0.5 Hz),
muscle (EMG; broadband), mains interference at 50 or 60 Hz (mostly common-mode, so only
the electrodes' imbalance reaches the leads) and electrode motion (slow large
excursions on one electrode). The acquisition band is a causal Butterworth filter, as
in the devices: a 0.5 Hz high-pass visibly bends ST segments, a 0.05 Hz one does not.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np
from scipy import signal

_WANDER_COMPONENTS = 4


def electrode_noise(
    n: int, fs: float, *, mains_hz: float, mains_mv: float, emg_mv: float, wander_mv: float,
    motion: bool, rng: np.random.Generator, contact_mv: float = 0.0,
) -> np.ndarray:
    """(n, 9) noise in mV."""
    t = np.arange(n) / fs
    # Wander and mains are sinusoids shared by all electrodes with per-electrode weights:
    # one (n, k) basis times a (k, 9) matrix.
    freqs = np.append(rng.uniform(0.05, 0.5, size=_WANDER_COMPONENTS), mains_hz)
    phases = rng.uniform(0, 2 * np.pi, size=_WANDER_COMPONENTS + 1)
    basis = np.sin(t[:, None] * (2 * np.pi * freqs) + phases)
    weights = rng.standard_normal((_WANDER_COMPONENTS + 1, 9))
    weights[:-1] *= wander_mv / np.sqrt(_WANDER_COMPONENTS)
    weights[-1] *= mains_mv
    noise = basis @ weights
    noise += emg_mv * rng.standard_normal((n, 9))
    if contact_mv > 0:
        # Skin-contact noise of suction chest electrodes: white noise through a one-pole
        # low-pass near 3 Hz, so its power sits inside the ECG's own band (1-10 Hz).
        b, a = _contact_filter(float(fs))
        noise[:, 3:] += contact_mv * signal.lfilter(b, a, rng.standard_normal((n, 6)), axis=0)
    if motion:
        electrode = rng.integers(9)
        for _ in range(rng.integers(1, 4)):
            centre, width = rng.uniform(0, t[-1]), rng.uniform(0.05, 0.3)
            noise[:, electrode] += rng.choice((-1, 1)) * rng.uniform(0.3, 1.0) * np.exp(-0.5 * ((t - centre) / width) ** 2)
    return noise


@functools.lru_cache(maxsize=8)
def _contact_filter(fs: float) -> tuple[np.ndarray, np.ndarray]:
    pole = np.exp(-2 * np.pi * 3.0 / fs)
    return np.array([np.sqrt(1 - pole**2)]), np.array([1.0, -pole])  # unit output variance


@functools.lru_cache(maxsize=64)
def _band_sos(fs: float, highpass_hz: float, lowpass_hz: float, order: int) -> tuple[np.ndarray, np.ndarray]:
    """(sos, steady-state initial conditions per unit input) of the device's band."""
    high = signal.butter(1, highpass_hz, "highpass", fs=fs, output="sos")
    low = signal.butter(order, min(lowpass_hz, 0.45 * fs), "lowpass", fs=fs, output="sos")
    sos = np.vstack([high, low])
    return sos, signal.sosfilt_zi(sos)


def acquisition_filter(x: np.ndarray, fs: float, highpass_hz: float, lowpass_hz: float, order: int = 2) -> np.ndarray:
    """Causal band-pass along time, started in steady state (no switch-on transient).

    The low-pass order is the device's: a steep Butterworth (order 4-6, a "muscle
    filter" near 40 Hz) rings after the QRS, a first-order one rounds it off."""
    sos, zi_unit = _band_sos(float(fs), float(highpass_hz), float(lowpass_hz), int(order))
    zi = zi_unit[:, :, None] * x[0][None, None, :]
    return signal.sosfilt(sos, x, axis=0, zi=zi)[0]


@functools.lru_cache(maxsize=64)
def _resampling_fir(up: int, down: int) -> np.ndarray:
    # 8 taps per phase instead of scipy's default 20: the device band already ends well
    # below the new Nyquist frequency, and this step is a large share of a record's cost.
    rate = max(up, down)
    return signal.firwin(8 * rate + 1, 1.0 / rate, window=("kaiser", 5.0))


def resample(x: np.ndarray, fs_from: float, fs_to: float) -> np.ndarray:
    """Polyphase resampling along time (no-op at equal rates)."""
    if fs_from == fs_to:
        return x
    ratio = Fraction(fs_to / fs_from).limit_denominator(1000)
    up, down = ratio.numerator, ratio.denominator
    return signal.resample_poly(x, up, down, axis=0, window=_resampling_fir(up, down))
