"""CPSC2018 as first published (TrainingSet1-3): a `.mat` per record holding struct `ECG`
(sex, age, data 12 x samples in mV, leads in standard order, 500 Hz) and one
`REFERENCE.csv` (Recording, First_label, Second_label, Third_label; codes 1-9).

REFERENCE.csv is read row by row (label_table.py): a row whose label is not a code 1-9
(`A1980,inf,,`) skips that record with the line number, not the file. `ECG.data` is
checked as the file declares it (class, logical and complex flags, and a data element
exactly as long as its shape) before it is decoded."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from heartbeatai.data import matlab_file
from heartbeatai.data.label_table import LabelTable, read_label_rows, where, whole_number
from heartbeatai.data.raw_record import (
    MAX_RECORD_BYTES,
    RawRecord,
    RecordError,
    check_amplitude,
    check_rate_and_length,
    parse_age,
    parse_sex,
)
from heartbeatai.data.source_files import open_regular, resolve_inside
from heartbeatai.labels import CPSC_REFERENCE_CODES

CPSC_REFERENCE = "REFERENCE.csv"
CPSC_FS = 500.0
_LABEL_COLUMNS = ("First_label", "Second_label", "Third_label")


def is_cpsc_reference(columns: list[str]) -> bool:
    return "Recording" in columns and "First_label" in columns


def load_reference(path: str | Path) -> LabelTable:
    """Recording -> its REFERENCE codes (1-9), in the file's order; bad and conflicting rows
    in `.problems` (record -> reason with the line number), file-level remarks in `.notes`."""
    header, rows = read_label_rows(path)
    if not is_cpsc_reference(header):
        raise ValueError(f"{path}: not a CPSC2018 REFERENCE.csv (needs Recording, First_label)")
    table = LabelTable(Path(path).name)
    for line, row, error in rows:
        at = where(path, line)
        if row is None:
            table.note(f"{at}: {error}; row skipped")
            continue
        name = (row.get("Recording") or "").strip()
        if not name or len(name) > 64 or not name.isprintable():
            table.note(f"{at}: no usable Recording name; row skipped")
            continue
        codes: list[int] = []
        try:
            for column in _LABEL_COLUMNS:
                value = row.get(column) or ""
                try:
                    code = whole_number(value, 1, 9)
                except ValueError:
                    raise ValueError(f"{column} {value.strip()[:20]!r} is not a code 1-9") from None
                if code is not None:
                    codes.append(code)
        except ValueError as err:
            table.reject(name, at, str(err))
            continue
        table.add(name, codes, at)
    return table


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


def _load_struct(mat_path: Path, root: str | Path | None) -> np.ndarray:
    real = resolve_inside(mat_path, root if root is not None else mat_path.parent, ".mat file")
    with open_regular(real, ".mat file") as handle:
        size = matlab_file.file_size(handle)
        if size > MAX_RECORD_BYTES + (1 << 20):
            raise RecordError(f"{mat_path.name} is {size} bytes, beyond the {MAX_RECORD_BYTES / 1e6:.1f} MB limit")
        try:
            found, header = matlab_file.variables(handle, mat_path.name, wanted={"ECG"})
        except RecordError as err:
            raise RecordError(f"unreadable .mat without header: {err}") from None
        var = found.get("ECG")
        if var is None:
            raise RecordError("no .hea header and no CPSC2018 'ECG' struct in the .mat")
        if var.mclass != "struct":
            raise RecordError(f"CPSC2018 'ECG' is a {var.describe()} array, not a struct")
        return matlab_file.load_variable(handle, header, var, MAX_RECORD_BYTES, mat_path.name,
                                         check_fields=_check_data_declaration)


def _check_data_declaration(fields: dict[str, matlab_file.MatVariable]) -> None:
    """`ECG.data` as the file declares it, before it is decoded. The logical flag is
    checked here because scipy hands a logical array back as uint8: a boolean `data`
    would otherwise pass as a 0/1 mV signal."""
    data = fields.get("data")
    if data is None:
        return  # the reader says the struct has no 'data'
    if data.logical:
        raise RecordError(f"CPSC2018 'ECG.data' is boolean (logical {data.describe().split()[-1]}), not a signal in mV")
    if data.complex or data.mclass not in matlab_file.NUMERIC_CLASSES:
        raise RecordError(f"CPSC2018 'ECG.data' is not a real numeric matrix ({data.describe()})")


def read_cpsc_native(mat_path: str | Path, reference: Mapping[str, list[int]] | None, *,
                     root: str | Path | None = None) -> RawRecord:
    """A CPSC2018 TrainingSet record; `reference` as `load_reference` returns it (its
    `.problems` name the rows that could not be used). `root`: the source folder."""
    mat_path = Path(mat_path)
    ecg = _load_struct(mat_path, root)
    struct = ecg.reshape(-1)[0] if ecg.dtype.names and ecg.size else None
    data = _field(struct, "data") if struct is not None else None
    if data is None:
        raise RecordError("CPSC2018 'ECG' struct without 'data'")
    data = np.asarray(data)
    if data.ndim != 2 or data.dtype.kind not in "iuf":
        raise RecordError(f"CPSC2018 'ECG.data' is not a real numeric matrix (shape {data.shape}, {data.dtype})")
    if data.shape[0] != 12:
        raise RecordError(f"CPSC2018 'ECG.data' has {data.shape[0]} leads, expected 12")
    check_rate_and_length(CPSC_FS, data.shape[1])
    check_amplitude(data.T, 1.0, "CPSC2018 'ECG.data'")  # time-major view: checked a chunk of samples at a time
    name = mat_path.stem
    problems = getattr(reference, "problems", {})
    if name in problems:
        raise RecordError(f"no labels: {problems[name]}")
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
