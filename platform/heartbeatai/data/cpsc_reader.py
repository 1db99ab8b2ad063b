"""CPSC2018 as first published (TrainingSet1-3): a `.mat` per record holding struct `ECG`
(sex, age, data 12 x samples in mV, leads in standard order, 500 Hz) and one
`REFERENCE.csv` (Recording, First_label, Second_label, Third_label; codes 1-9)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.io

from heartbeatai.data.raw_record import RawRecord, RecordError, check_rate_and_length, parse_age, parse_sex
from heartbeatai.labels import CPSC_REFERENCE_CODES

CPSC_REFERENCE = "REFERENCE.csv"
CPSC_FS = 500.0
_LABEL_COLUMNS = ("First_label", "Second_label", "Third_label")


def is_cpsc_reference(columns: list[str]) -> bool:
    return "Recording" in columns and "First_label" in columns


def load_reference(path: str | Path) -> dict[str, list[int]]:
    """Recording -> its REFERENCE codes (1-9), in the file's order."""
    table = pd.read_csv(path, dtype=str)
    if not is_cpsc_reference(list(table.columns)):
        raise ValueError(f"{path}: not a CPSC2018 REFERENCE.csv (needs Recording, First_label)")
    reference: dict[str, list[int]] = {}
    for row in table.itertuples(index=False):
        codes = []
        for column in _LABEL_COLUMNS:
            value = getattr(row, column, None)
            if isinstance(value, str) and value.strip():
                try:
                    codes.append(int(float(value)))
                except ValueError:
                    raise ValueError(f"{path}: {row.Recording}: label {value!r} is not a code 1-9") from None
        reference[str(row.Recording).strip()] = codes
    return reference


def _field(struct: np.ndarray, name: str):
    try:
        value = struct[name]
    except (ValueError, KeyError, IndexError):
        return None
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.item()
    return value


def _scalar_text(value) -> str | None:
    if value is None:
        return None
    array = np.asarray(value).ravel()
    return str(array[0]) if array.size else None


def read_cpsc_native(mat_path: str | Path, reference: dict[str, list[int]] | None) -> RawRecord:
    mat_path = Path(mat_path)
    try:
        content = scipy.io.loadmat(mat_path, variable_names=["ECG"])
    except Exception as err:  # damaged or foreign .mat files raise many types
        text = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise RecordError(f"unreadable .mat without header: {text}") from None
    ecg = content.get("ECG")
    if ecg is None:
        raise RecordError("no .hea header and no CPSC2018 'ECG' struct in the .mat")
    struct = ecg.reshape(-1)[0] if ecg.dtype.names else None
    data = _field(struct, "data") if struct is not None else None
    if data is None:
        raise RecordError("CPSC2018 'ECG' struct without 'data'")
    data = np.asarray(data)
    if data.ndim != 2 or not np.issubdtype(data.dtype, np.number):
        raise RecordError(f"CPSC2018 'ECG.data' is not a numeric matrix (shape {data.shape})")
    if data.shape[0] != 12:
        raise RecordError(f"CPSC2018 'ECG.data' has {data.shape[0]} leads, expected 12")
    check_rate_and_length(CPSC_FS, data.shape[1])
    name = mat_path.stem
    if reference is None or name not in reference:
        raise RecordError(f"no labels: record not in a {CPSC_REFERENCE} next to the records or given with --labels")
    numbers = reference[name]
    unknown = [n for n in numbers if n not in CPSC_REFERENCE_CODES]
    if unknown:
        raise RecordError(f"REFERENCE codes {unknown} outside 1-9")
    return RawRecord(
        record_id=name,
        source_path=str(mat_path),
        signal=data.T.astype(np.float32),  # already mV
        fs=CPSC_FS,
        label_codes_raw=[str(n) for n in numbers],
        label_codes=list(dict.fromkeys(CPSC_REFERENCE_CODES[n] for n in numbers)),
        age=parse_age(_scalar_text(_field(struct, "age"))),
        sex=parse_sex(_scalar_text(_field(struct, "sex"))),
        leads_original=12,
        source_domain="cpsc",
    )
