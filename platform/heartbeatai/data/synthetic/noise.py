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
_CONTACT_COMPONENTS = 8


def electrode_noise(
    n: int, fs: float, *, mains_hz: float, mains_mv: float, emg_mv: float, wander_mv: float,
    motion: bool, rng: np.random.Generator, contact_mv: float = 0.0,
) -> np.ndarray:
    """(n, 9) noise in mV."""
    # Wander, mains and chest-electrode contact noise are sinusoids with per-electrode
    # weights: one (n, k) basis times a (k, 9) matrix. Contact noise (suction chest
    # electrodes) is a 1/f-like sum of components at 0.7-8 Hz, inside the ECG's own band,
    # on V1-V6 only.
    contact = _CONTACT_COMPONENTS if contact_mv > 0 else 0
    freqs = np.concatenate([rng.uniform(0.05, 0.5, size=_WANDER_COMPONENTS), [mains_hz],
                            np.exp(rng.uniform(np.log(0.7), np.log(8.0), size=contact))])
    phases = rng.uniform(0, 2 * np.pi, size=freqs.size)
    basis = sinusoids(n, fs, freqs, phases)
    weights = rng.standard_normal((freqs.size, 9))
    weights[:_WANDER_COMPONENTS] *= wander_mv / np.sqrt(_WANDER_COMPONENTS)
    weights[_WANDER_COMPONENTS] *= mains_mv
    if contact:
        scale = 1.0 / np.sqrt(freqs[_WANDER_COMPONENTS + 1:])  # 1/f power
        weights[_WANDER_COMPONENTS + 1:] *= (contact_mv * np.sqrt(2.0) / np.linalg.norm(scale) * scale)[:, None]
        weights[_WANDER_COMPONENTS + 1:, :3] = 0.0
    noise = basis @ weights.astype(np.float32)
    # EMG: broadband, drawn uniform (a fifth of the cost of normal draws); the device's
    # low-pass and any resampling sum several samples, so what remains is Gaussian.
    noise += (emg_mv * np.sqrt(12.0)) * (rng.random((n, 9), dtype=np.float32) - np.float32(0.5))
    if motion:
        electrode = rng.integers(9)
        for _ in range(rng.integers(1, 4)):
            centre, width = rng.uniform(0, (n - 1) / fs), rng.uniform(0.05, 0.3)
            lo, hi = max(0, int((centre - 5 * width) * fs)), min(n, int((centre + 5 * width) * fs) + 1)
            t = np.arange(lo, hi) / fs
            noise[lo:hi, electrode] += rng.choice((-1, 1)) * rng.uniform(0.3, 1.0) * np.exp(-0.5 * ((t - centre) / width) ** 2)
    return noise


def sinusoids(n: int, fs: float, freqs: np.ndarray, phases: np.ndarray, block: int = 64) -> np.ndarray:
    """(n, k) sin(2 pi f t + phase) at t = i / fs, by the angle-addition identity over
    blocks of samples: a few sines per block instead of one per sample (~3x faster)."""
    omega = 2 * np.pi * np.asarray(freqs) / fs
    starts = np.arange(-(-n // block)) * block
    coarse = starts[:, None] * omega + phases  # (blocks, k)
    fine = np.arange(block)[:, None] * omega  # (block, k)
    # angles in float64 (they reach thousands of radians), products in float32
    sin_c, cos_c = np.sin(coarse).astype(np.float32), np.cos(coarse).astype(np.float32)
    values = sin_c[:, None, :] * np.cos(fine).astype(np.float32) + cos_c[:, None, :] * np.sin(fine).astype(np.float32)
    return values.reshape(-1, omega.size)[:n]


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
    # float32 throughout (about twice as fast): the output is written as int16 microvolts
    x = np.asarray(x, dtype=np.float32)
    zi = (zi_unit[:, :, None] * x[0][None, None, :]).astype(np.float32)
    return signal.sosfilt(sos.astype(np.float32), x, axis=0, zi=zi)[0]


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
