"""Signal identity for duplicate detection (DESIGN.md: hash_exact, hash_coarse).

- hash_exact: int16 microvolts at the original rate, standard lead order. Equal for the
  same file content re-published under another name or container.
- hash_coarse: the signal at 100 Hz rounded to 10 microvolts, then unified across
  near-duplicates. Rounding alone cannot catch a re-release at another rate: PTB-XL's
  own 100 Hz files (00001_lr) come from a different anti-aliasing filter than ours
  (HR00001 starts at -115 uV, 00001_lr at -119 uV), and with 12,000 values a few
  always fall on the other side of a rounding step. So prepare also takes a small
  sketch of every record (10 Hz, mean-free, unit norm: blind to rate, filter and gain),
  finds records whose sketches agree (cosine >= NEAR_DUPLICATE_COSINE) through
  random-hyperplane LSH, and gives each such group one hash_coarse. Distinct
  recordings are never that close: their beats do not line up.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from fractions import Fraction
from typing import Iterable

import numpy as np
from scipy.signal import resample_poly

COARSE_FS = 100
COARSE_STEP_UV = 10
SKETCH_FS = 10
SKETCH_START_S = 0.5  # skip the first samples, where resampling filters disagree most
SKETCH_MAX_S = 8
SKETCH_MIN_S = 2
NEAR_DUPLICATE_COSINE = 0.98
_LSH_BANDS, _LSH_BITS = 6, 14
_LSH_SEED = 20201


def _digest(values: np.ndarray) -> str:
    values = np.ascontiguousarray(values)
    head = f"{values.shape}".encode()
    return hashlib.blake2b(head + values.tobytes(), digest_size=12).hexdigest()


def resample(signal: np.ndarray, fs_from: float, fs_to: float) -> np.ndarray:
    """Polyphase resampling along time (axis 0); identity when the rates agree."""
    if fs_from == fs_to:
        return signal
    ratio = Fraction(fs_to / fs_from).limit_denominator(1000)
    return resample_poly(signal, ratio.numerator, ratio.denominator, axis=0)


def to_microvolts_int16(signal_mv: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(signal_mv, dtype=np.float64) * 1000.0), -32768, 32767).astype("<i2")


# Both hashes work on the whole record at its original rate, which may be an hour: they go
# a block of rows (hash_exact) or a lead (hash_coarse) at a time, so a record costs its
# float32 signal plus a block, not a float64 copy of it and more (4-8x its raw size). The
# digests are those of the whole arrays: the bytes hashed are the same, in the same order.
_HASH_ROWS = 1 << 16


def hash_exact(signal_mv: np.ndarray) -> str:
    """Signal at its original rate, (samples, 12) mV, NaN already set to 0."""
    digest = hashlib.blake2b(f"{signal_mv.shape}".encode(), digest_size=12)
    for start in range(0, len(signal_mv), _HASH_ROWS):
        digest.update(np.ascontiguousarray(to_microvolts_int16(signal_mv[start:start + _HASH_ROWS])).tobytes())
    return digest.hexdigest()


def hash_coarse(signal_mv: np.ndarray, fs: float) -> str:
    if signal_mv.ndim != 2 or len(signal_mv) <= _HASH_ROWS:  # one filter design: most of a short record's cost
        coarse = resample(np.asarray(signal_mv, dtype=np.float64), fs, COARSE_FS)
    else:  # a lead at a time: polyphase filtering works on each lead alone, bit for bit
        coarse = np.stack([resample(np.asarray(signal_mv[:, lead], dtype=np.float64), fs, COARSE_FS)
                           for lead in range(signal_mv.shape[1])], axis=1)
    steps = np.rint(coarse * (1000.0 / COARSE_STEP_UV))
    return _digest(np.clip(steps, -32768, 32767).astype("<i2"))


def sketch(signal_mv: np.ndarray, fs: float) -> np.ndarray | None:
    """Unit vector summarising the first seconds at 10 Hz; None when too short or flat.

    Means over 0.1 s blocks low-pass the signal (so the sketch is blind to how a source
    was filtered above a few Hz) at a fraction of a polyphase filter's cost. Its length
    encodes the seconds covered, so only records of comparable duration meet.
    """
    block = int(round(fs / SKETCH_FS))
    seconds = min(SKETCH_MAX_S, int(len(signal_mv) / fs - 2 * SKETCH_START_S))
    if seconds < SKETCH_MIN_S or block < 1:
        return None
    start = int(round(SKETCH_START_S * fs))
    blocks = seconds * SKETCH_FS
    window = np.asarray(signal_mv[start : start + blocks * block], dtype=np.float64)
    window = window.reshape(blocks, block, -1).mean(axis=1)
    window -= window.mean(axis=0)
    norm = np.linalg.norm(window)
    if not np.isfinite(norm) or norm < 1e-6:
        return None
    # float16: 2 KB a record keeps the sketches of a full release (~90k records) in memory
    return (window / norm).astype(np.float16).ravel()


def near_duplicate_groups(sketches: Iterable[np.ndarray | None]) -> list[list[int]]:
    """Groups (size >= 2) of positions whose sketches have cosine >= NEAR_DUPLICATE_COSINE."""
    sketches = list(sketches)
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(sketches):
        if s is not None:
            by_length[len(s)].append(i)
    parent = list(range(len(sketches)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for length, members in by_length.items():
        if len(members) < 2:
            continue
        matrix = np.stack([sketches[i] for i in members])
        planes = np.random.default_rng(_LSH_SEED + length).standard_normal((length, _LSH_BANDS * _LSH_BITS))
        planes = planes.astype(np.float32)
        bits = np.concatenate(
            [matrix[i : i + 4096].astype(np.float32) @ planes > 0 for i in range(0, len(matrix), 4096)]
        )
        weights = 1 << np.arange(_LSH_BITS, dtype=np.int64)
        for band in range(_LSH_BANDS):
            keys = bits[:, band * _LSH_BITS : (band + 1) * _LSH_BITS] @ weights
            buckets: dict[int, list[int]] = defaultdict(list)
            for row, key in enumerate(keys.tolist()):
                buckets[key].append(row)
            for rows in buckets.values():
                if len(rows) < 2:
                    continue
                bucket = matrix[rows].astype(np.float32)
                for lo in range(0, len(rows), 1024):  # bounded memory however full a bucket is
                    a, b = np.nonzero(bucket[lo : lo + 1024] @ bucket.T >= NEAR_DUPLICATE_COSINE)
                    for i, j in zip((a + lo).tolist(), b.tolist()):
                        if j > i:
                            parent[find(members[rows[i]])] = find(members[rows[j]])
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(sketches)):
        groups[find(i)].append(i)
    return [g for g in groups.values() if len(g) > 1]
