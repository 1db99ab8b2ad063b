"""What every reader returns: one record in mV, standard lead order, at its own rate.

Readers differ in file formats and label schemes; from here on (preprocessing, hashing,
writing) nothing needs to know which source a record came from.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from heartbeatai.ecg import LEADS, N_LEADS

_LEAD_INDEX = {name.upper(): i for i, name in enumerate(LEADS)}

# --- The record-size limit: declared once, checked before anything is read ---------------
# A record may declare at most one hour at its own rate, at a rate of at most 2 kHz, and at
# most MAX_RECORD_BYTES of stored signal data (12 leads x 1 h x 2 kHz of int16, 172.8 MB).
# Beyond it the header or matrix is corrupt or hostile (a Holter export, a compressed bomb),
# and the record is skipped with the reason before its data are read or decompressed; below
# it the record is read whole and cut to --max-seconds as always (INCART's 30 minutes at
# 257 Hz prepare). A float64 matrix counts 8 bytes a value: 12 leads at 500 Hz fit an hour.
MIN_FS, MAX_FS = 50.0, 2_000.0
MAX_RECORD_SECONDS = 3600.0
MAX_RECORD_BYTES = int(N_LEADS * MAX_RECORD_SECONDS * MAX_FS * 2)
MAX_SIGNALS = 64  # signals one header may declare (PTB has 15)
# The prepared float16 signal tops out at 65504; a value beyond this many mV is corrupt.
MAX_ABS_MV = 60_000.0


class RecordError(Exception):
    """A record that cannot be prepared; the message is the one-line reason in the manifest."""


@dataclass
class RawRecord:
    record_id: str
    source_path: str
    signal: np.ndarray  # float32 (samples, 12), mV, standard lead order; may hold NaN
    fs: float
    label_codes_raw: list[str]  # as the source writes them (codes, abbreviations, SCP statements)
    label_codes: list[str]  # SNOMED-CT (abbreviations resolved), unknown codes kept
    patient_id: str | None = None
    age: float | None = None
    sex: str | None = None  # "male" | "female" | None
    header_gain: float | None = None  # ADC units per mV as the header states it
    gain_mismatch: bool = False  # header gain contradicts the known units of the data
    leads_original: int = 12
    source_domain: str | None = None  # what a native reader knows (PTB-XL native is ptbxl)


def check_rate_and_length(fs: float, samples: int, n_leads: int | None = None) -> None:
    """Reject absurd header values, and records beyond the size limit, before allocating anything."""
    if not math.isfinite(fs) or not MIN_FS <= fs <= MAX_FS:
        raise RecordError(f"absurd sampling rate {fs:g} Hz (expected {MIN_FS:g}-{MAX_FS:g})")
    if n_leads is not None and not 1 <= n_leads <= MAX_SIGNALS:
        raise RecordError(f"absurd lead count {n_leads}")
    if samples < 1:
        raise RecordError(f"absurd length {samples} samples")
    if samples > MAX_RECORD_SECONDS * fs:
        raise RecordError(
            f"declares {samples} samples ({samples / fs / 3600:.3g} h at {fs:g} Hz), beyond the limit of "
            f"{MAX_RECORD_SECONDS / 3600:g} h at its own rate"
        )


def check_record_bytes(samples: int, n_signals: int, itemsize: int, what: str) -> None:
    """The declared size of a record's stored matrix against MAX_RECORD_BYTES."""
    declared = int(samples) * int(n_signals) * int(itemsize)
    if declared > MAX_RECORD_BYTES:
        raise RecordError(
            f"{what} declares {n_signals} x {samples} values of {itemsize} bytes ({declared / 1e6:.1f} MB), "
            f"beyond the {MAX_RECORD_BYTES / 1e6:.1f} MB limit"
        )


# Rows of a signal handled at a time where a whole-record temporary would cost a multiple
# of the record (a 12 x 7.1 M int16 matrix, 170 MB, peaked at 2.1 GB converted whole).
CHUNK_SAMPLES = 1 << 16


def peak_of(values: np.ndarray) -> float:
    """Largest absolute finite value (0 for none), without a whole-array temporary."""
    if values.size == 0:
        return 0.0
    if values.dtype.kind != "f":
        return float(max(abs(int(values.max())), abs(int(values.min()))))
    peak = 0.0
    for start in range(0, len(values), CHUNK_SAMPLES):  # along the first axis
        chunk = values[start:start + CHUNK_SAMPLES]
        finite = chunk[np.isfinite(chunk)]
        if finite.size:
            peak = max(peak, float(np.abs(finite).max()))
    return peak


def check_peak(peak: float, to_mv: float, what: str) -> None:
    """Values beyond +-60 V are corrupt (int64 1e15, a float 1e300), never clipped silently."""
    if peak * to_mv > MAX_ABS_MV:
        raise RecordError(f"{what} holds values up to {peak * to_mv:.3g} mV, beyond +-{MAX_ABS_MV:g} mV: "
                          "not an ECG in the stated units")


def check_amplitude(values: np.ndarray, to_mv: float, what: str) -> None:
    check_peak(peak_of(values), to_mv, what)


def standard_lead_order(names: list[str]) -> list[int]:
    """Column of each standard lead in a source's lead list (case-insensitive).

    Extra leads (PTB's Frank vx, vy, vz) are left out; a missing or repeated standard
    lead is an error rather than a silently shifted signal.
    """
    found: dict[int, int] = {}
    for column, name in enumerate(names):
        lead = _LEAD_INDEX.get(name.strip().upper())
        if lead is None:
            continue
        if lead in found:
            raise RecordError(f"lead {LEADS[lead]} appears twice")
        found[lead] = column
    missing = [LEADS[i] for i in range(len(LEADS)) if i not in found]
    if missing:
        raise RecordError(f"missing standard leads {','.join(missing)} (has {','.join(names) or 'none'})")
    return [found[i] for i in range(len(LEADS))]


def parse_age(text: str | float | None) -> float | None:
    """Age in years; None for 'Unknown', 'NaN' and negatives.

    PTB-XL writes 300 for every patient over 89 (anonymisation): that becomes 90.
    """
    if text is None:
        return None
    try:
        age = float(str(text).strip())
    except ValueError:
        return None
    if age == 300:
        return 90.0
    if not math.isfinite(age) or not 0 <= age <= 120:
        return None
    return age


_SEX = {"m": "male", "male": "male", "f": "female", "female": "female"}


def parse_sex(text: str | float | None) -> str | None:
    if text is None:
        return None
    return _SEX.get(str(text).strip().lower())


# Label codes one record may carry. The real releases' longest `#Dx:` lists hold about
# 15; a header of 100,000 codes (0.6 MB, within the 1 MB header cap) is hostile, and is
# skipped with the reason before any code is looked up.
MAX_CODES = 256


def clean_codes(tokens: list[str]) -> list[str]:
    """Strip, drop empty fields and repeats (both occur in real `#Dx:` lines), keep order.
    Linear: repeats are found through a dict, never by searching a list."""
    return list(dict.fromkeys(token for token in (t.strip() for t in tokens) if token))


def check_code_count(count: int, what: str) -> None:
    if count > MAX_CODES:
        raise RecordError(f"{what} lists {count} codes, more than the {MAX_CODES} one record may carry")


_SPLIT_DX = re.compile(r"[,;]")


def split_dx(text: str, what: str = "#Dx") -> list[str]:
    """The codes of a `#Dx:` value as written (repeats and empty fields dropped);
    RecordError beyond MAX_CODES fields, counted before anything else is done with them."""
    tokens = _SPLIT_DX.split(text)
    check_code_count(sum(1 for token in tokens if token.strip()), what)
    return clean_codes(tokens)
