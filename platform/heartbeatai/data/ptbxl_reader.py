"""Native WFDB records (`.hea` + `.dat`): PTB-XL (records100/records500) and PTB.

Their headers are well-formed and their gains right: physical units come from the header
(gain, baseline, units, as WFDB defines them). The header is parsed by the same parser as
the challenge's; every file it names must be a regular file inside the source folder and
as long as the header says before a byte is read, and only the header's window is read, a chunk of rows at a time:
format 16 (every PTB-XL and PTB file) here, other formats by wfdb.rdrecord with
`sampfrom`/`sampto`. Labels: PTB-XL's come from
`ptbxl_database.csv` (scp_codes is a Python dict literal: statement -> likelihood),
mapped to SNOMED-CT through the curated table shipped as
package_data/ptbxl_scp_to_snomed.csv; every statement is used whatever its likelihood,
as the challenge's own re-release did (its HR00001 carries LVOLT and SR, both given
likelihood 0 in the database). PTB's diagnosis is the header's "Reason for admission".
"""

from __future__ import annotations

import ast
import csv
import functools
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import wfdb

from heartbeatai.data.challenge_reader import WfdbHeader, read_header
from heartbeatai.data.label_table import LabelTable, read_label_rows, where, whole_number

from heartbeatai.data.raw_record import (
    RawRecord,
    RecordError,
    check_amplitude,
    check_rate_and_length,
    check_record_bytes,
    CHUNK_SAMPLES,
    parse_age,
    parse_sex,
    split_dx,
    standard_lead_order,
)
from heartbeatai.data.source_files import open_regular, resolve_named, shown
from heartbeatai.labels import parse_dx

PTBXL_DATABASE = "ptbxl_database.csv"
_REQUIRED_COLUMNS = {"ecg_id", "patient_id", "age", "sex", "scp_codes", "filename_lr", "filename_hr"}
_PTB_PATIENT = re.compile(r"patient\d+", re.IGNORECASE)


@dataclass(frozen=True)
class PtbxlEntry:
    patient_id: str
    age: float | None
    sex: str | None
    scp_codes: tuple[str, ...]


@functools.lru_cache(maxsize=None)
def scp_to_snomed() -> dict[str, str]:
    """SCP statement -> SNOMED-CT code, for statements that have an equivalent."""
    path = resources.files("heartbeatai") / "package_data" / "ptbxl_scp_to_snomed.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["scp_code"]: row["snomed_code"] for row in csv.DictReader(handle) if row["snomed_code"]}


def is_ptbxl_database(columns: list[str]) -> bool:
    return _REQUIRED_COLUMNS.issubset(columns)


_MAX_SCP_TEXT = 4096  # a row's scp_codes literal; PTB-XL's longest is ~100 characters


def _scp_codes(text: str) -> tuple[str, ...]:
    """scp_codes: a dict literal of SCP statement -> likelihood (0-100), else ValueError."""
    text = text.strip()
    if len(text) > _MAX_SCP_TEXT:
        raise ValueError(f"scp_codes is {len(text)} characters long")
    try:
        statements = ast.literal_eval(text) if text else {}
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(f"scp_codes {text[:30]!r} is not a dict literal") from None
    if not isinstance(statements, dict):
        raise ValueError(f"scp_codes {text[:30]!r} is a {type(statements).__name__}, not a dict of statement -> likelihood")
    for key, value in statements.items():
        if not isinstance(key, str) or not key.strip() or len(key) > 32 or not key.isprintable():
            raise ValueError(f"scp_codes key {str(key)[:20]!r} is not an SCP statement")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
            raise ValueError(f"scp_codes likelihood {str(value)[:20]!r} of {key} is not a number 0-100")
    return tuple(key.strip() for key in statements)


def _ptbxl_entry(row: dict[str, str]) -> PtbxlEntry:
    """One database row, range-checked; ValueError naming the field otherwise."""
    try:
        patient = whole_number(row.get("patient_id") or "", 0, 1e9)
    except ValueError as err:
        raise ValueError(f"patient_id {err}") from None
    try:
        sex_code = whole_number(row.get("sex") or "", 0, 1)
    except ValueError as err:
        raise ValueError(f"sex {err} (PTB-XL codes 0 male, 1 female)") from None
    age_text = (row.get("age") or "").strip()
    age = None
    if age_text and age_text.lower() != "nan":
        try:
            value = float(age_text)
        except ValueError:
            raise ValueError(f"age {age_text[:20]!r} is not a number") from None
        if not 0 <= value <= 300:  # 300 = over 89 (anonymisation); nan and inf fail too
            raise ValueError(f"age {age_text[:20]!r} is not 0-120 (or 300, over 89)")
        age = parse_age(value)
    # PTB-XL codes sex 0 = male, 1 = female
    sex = {0: "male", 1: "female"}.get(sex_code) if sex_code is not None else None
    return PtbxlEntry(f"ptbxl:{patient}" if patient is not None else None, age, sex, _scp_codes(row.get("scp_codes") or ""))


def load_ptbxl_database(path: str | Path) -> LabelTable:
    """Record name (`00001_lr`, `00001_hr`) -> patient, demographics and SCP statements.

    Row by row: a row with a bad field (scp_codes not a dict of statement -> number,
    patient_id or sex out of range) is skipped with its line number in `.problems`
    under each record it names; the other rows stand."""
    header, rows = read_label_rows(path)
    missing = _REQUIRED_COLUMNS.difference(header)
    if missing:
        raise ValueError(f"{path}: not a PTB-XL database (missing columns {sorted(missing)})")
    table = LabelTable(Path(path).name)
    for line, row, error in rows:
        at = where(path, line)
        if row is None:
            table.note(f"{at}: {error}; row skipped")
            continue
        names = [Path(f.strip()).name for f in (row.get("filename_lr") or "", row.get("filename_hr") or "")
                 if f.strip()]
        names = [n for n in names if n.isprintable() and len(n) <= 64]
        if not names:
            table.note(f"{at}: no filename_lr or filename_hr; row skipped")
            continue
        try:
            entry = _ptbxl_entry(row)
        except ValueError as err:
            for name in names:
                table.reject(name, at, str(err))
            continue
        for name in names:
            table.add(name, entry, at)
    return table


def _ptb_patient(hea_path: Path) -> str | None:
    folder = hea_path.parent.name
    return f"ptb:{folder}" if _PTB_PATIENT.fullmatch(folder) else None


# WFDB storage formats: bytes per sample. `16` (every PTB-XL and PTB file) is read here;
# the others are decoded by wfdb, over the same checked window.
_FORMAT_BYTES = {"8": 1.0, "16": 2.0, "24": 3.0, "32": 4.0, "61": 2.0, "80": 1.0, "160": 2.0, "212": 1.5,
                 "310": 4 / 3, "311": 4 / 3}


def format_bytes(fmt: str, values: int) -> tuple[int, int]:
    """(fewest, most) bytes in which a WFDB writer stores `values` samples in format `fmt`.

    Byte-aligned formats take exactly values x bytes; the packed ones (212: two 12-bit
    samples in 3 bytes; 310, 311: three 10-bit samples in 4 bytes) may pad their last
    group (wfdb writes 311 so, the C library 310). A signal file must be exactly this long
    past its byte offset: a header declaring another format than the file's is otherwise
    decoded as noise (a format-16 file read as 212 correlates 0.01 with its signal).
    """
    if fmt == "212":
        return math.ceil(values * 3 / 2), 3 * math.ceil(values / 2)
    if fmt in ("310", "311"):
        return math.ceil(values * 4 / 3), 4 * math.ceil(values / 3)
    exact = values * int(_FORMAT_BYTES[fmt])
    return exact, exact


def _check_file_size(file: str, size: int, offset: int, fmt: str, n_signals: int, sig_len: int) -> None:
    """The file's size against what its header declares: format, signals, samples."""
    held = size - offset
    low, high = format_bytes(fmt, sig_len * n_signals)
    if held < low:
        samples = int(max(0, held) // (_FORMAT_BYTES[fmt] * n_signals))
        raise RecordError(f"truncated {shown(file)}: {samples} of {sig_len} samples")
    if held > high:
        fits = [other for other in _FORMAT_BYTES if other != fmt
                and format_bytes(other, sig_len * n_signals)[0] <= held <= format_bytes(other, sig_len * n_signals)[1]]
        hint = f"; its size fits format {' or '.join(fits)}" if fits else ""
        raise RecordError(f"{shown(file)} is {size} bytes, but format {fmt} for {n_signals} signals x {sig_len} "
                          f"samples takes {offset + low}{hint}: header and file disagree")
_FORMAT = re.compile(r"^(\d+)(?:\+(\d+))?$")  # format and byte offset (`x` frames and `:` skew: unsupported)
_MV_PER_UNIT = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3}
_WFDB_DEFAULT_GAIN = 200.0
_INVALID_16 = -32768  # WFDB's "no sample" value of format 16


@dataclass(frozen=True)
class _Signal:
    file: str
    fmt: str
    offset: int
    gain: float  # ADC units per physical unit
    baseline: float
    mv_per_unit: float
    initial: int = 0  # format 8: the sample before the first difference


def _signal(line_tokens: list[str]) -> _Signal:
    """`file fmt gain(baseline)/units adcres adczero ...` -> what decoding needs."""
    file, fmt_text = line_tokens[0], line_tokens[1]
    match = _FORMAT.match(fmt_text)
    if not match or match.group(1) not in _FORMAT_BYTES:
        raise RecordError(f"unsupported WFDB storage format {fmt_text[:20]!r}")
    spec = line_tokens[2] if len(line_tokens) > 2 else ""
    gain_text, _, units = spec.partition("/")
    gain_text, _, baseline_text = gain_text.partition("(")
    try:
        gain = float(gain_text) if gain_text else 0.0
        zero = float(line_tokens[4]) if len(line_tokens) > 4 else 0.0
        baseline = float(baseline_text.rstrip(")")) if baseline_text else zero
        initial = int(line_tokens[5]) if len(line_tokens) > 5 else 0
    except ValueError:
        raise RecordError(f"bad gain or baseline {spec[:30]!r} in header") from None
    if not all(np.isfinite([gain, baseline])):
        raise RecordError(f"bad gain or baseline {spec[:30]!r} in header")
    unit = (units.strip() or "mV").lower()
    if unit not in _MV_PER_UNIT:
        raise RecordError(f"unsupported units {units.strip()[:20]!r}")
    return _Signal(file, match.group(1), int(match.group(2) or 0), gain or _WFDB_DEFAULT_GAIN, baseline,
                   _MV_PER_UNIT[unit], initial)


def _read_signals(hea_path: Path, header: WfdbHeader, signals: list[_Signal], order: list[int],
                  root: str | Path | None) -> np.ndarray:
    """(samples, 12) float32 mV of the standard leads: every file they live in is checked
    (regular, inside the source folder, exactly as long as the header says) before it is
    read, and only the header's window of it is read, a chunk of rows at a time into the
    output: the record costs its float32 signal plus one chunk (a memory map of the whole
    window, or wfdb's int64 and float64 copies of it, would cost a multiple)."""
    by_file: dict[str, list[int]] = {}
    for index, sig in enumerate(signals):
        by_file.setdefault(sig.file, []).append(index)
    needed = {signals[i].file for i in order}
    column_of = {index: column for column, index in enumerate(order)}
    sig_len = header.sig_len
    out: np.ndarray | None = None
    by_wfdb: list[int] = []
    for file in sorted(needed):
        members = by_file[file]
        fmt, offset = signals[members[0]].fmt, signals[members[0]].offset
        if any((signals[i].fmt, signals[i].offset) != (fmt, offset) for i in members):
            raise RecordError(f"signals of {file} disagree on their storage format")
        real = resolve_named(hea_path.parent, header.path_name(file), root, "signal file")
        with open_regular(real, "signal file") as handle:
            size = os.fstat(handle.fileno()).st_size
            per_sample = _FORMAT_BYTES[fmt] * len(members)
            if sig_len is None:
                if fmt != "16":
                    raise RecordError("header gives no record length")
                sig_len = max(0, size - offset) // int(per_sample)
                check_rate_and_length(header.fs, sig_len, header.n_sig)
            check_record_bytes(sig_len, header.n_sig, math.ceil(_FORMAT_BYTES[fmt]), "header")
            _check_file_size(file, size, offset, fmt, len(members), sig_len)
            if out is None:
                out = np.empty((sig_len, len(order)), dtype=np.float32)
            if fmt not in ("16", "8"):
                by_wfdb.extend(i for i in members if i in column_of)
                continue
            # Format 8 holds first differences: wfdb restarts them from the header's
            # initial value at every `sampfrom`, so it is summed here, across chunks.
            handle.seek(offset)
            frame = len(members)
            itemsize = 2 if fmt == "16" else 1
            previous = np.array([signals[i].initial for i in members], dtype=np.int64)
            for first in range(0, sig_len, CHUNK_SAMPLES):
                rows = min(CHUNK_SAMPLES, sig_len - first)
                data = handle.read(rows * frame * itemsize)
                if len(data) != rows * frame * itemsize:  # shortened since its size was checked
                    held = first + len(data) // (itemsize * frame)
                    raise RecordError(f"truncated {shown(file)}: {held} of {sig_len} samples")
                block = np.frombuffer(data, dtype="<i2" if fmt == "16" else "i1").reshape(rows, frame)
                if fmt == "8":
                    block = previous + np.cumsum(block, axis=0, dtype=np.int64)
                    previous = block[-1]
                for position, index in enumerate(members):
                    if index in column_of:
                        sig = signals[index]
                        digital = block[:, position]
                        value = (digital.astype(np.float32) - np.float32(sig.baseline)) * np.float32(
                            sig.mv_per_unit / sig.gain)
                        if fmt == "16":
                            value[digital == _INVALID_16] = np.nan
                        out[first:first + rows, column_of[index]] = value
    if by_wfdb:  # other formats: wfdb decodes, reading no more than the window just checked
        channels = sorted(by_wfdb)
        for first in range(0, sig_len, CHUNK_SAMPLES):
            last = min(sig_len, first + CHUNK_SAMPLES)
            try:
                record = wfdb.rdrecord(str(hea_path.with_suffix("")), sampfrom=first, sampto=last, channels=channels)
            except Exception as err:  # wfdb raises many types on damaged files
                text = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
                raise RecordError(f"unreadable WFDB record: {text}") from None
            for position, index in enumerate(channels):
                out[first:last, column_of[index]] = record.p_signal[:, position].astype(np.float32) * np.float32(
                    signals[index].mv_per_unit)
    return out


def read_native_wfdb(hea_path: str | Path, ptbxl: Mapping[str, PtbxlEntry] | None = None, *,
                     root: str | Path | None = None, header: WfdbHeader | None = None) -> RawRecord:
    """A PTB-XL or PTB record. PTB-XL needs its database entry for labels and patient
    (`ptbxl` as `load_ptbxl_database` returns it). `root`: the source folder the record was
    found in (default: the header's folder); every file it names must resolve inside it."""
    hea_path = Path(hea_path)
    name = hea_path.stem
    root = root if root is not None else hea_path.parent
    if header is None:
        header = read_header(hea_path, root)
    order = standard_lead_order(header.lead_names)
    signals = [_signal(tokens) for tokens in header.signal_tokens]
    signal = _read_signals(hea_path, header, signals, order, root)
    check_amplitude(signal, 1.0, "signal")
    gains = [signals[i].gain for i in order]
    comments = header.comments

    problems = getattr(ptbxl, "problems", {})
    if name in problems:
        raise RecordError(f"no labels: {problems[name]}")
    if ptbxl is not None and name in ptbxl:
        entry = ptbxl[name]
        raw = list(entry.scp_codes)
        mapping = scp_to_snomed()
        codes = list(dict.fromkeys(mapping[c] for c in raw if c in mapping))
        patient, age, sex, domain = entry.patient_id, entry.age, entry.sex, "ptbxl"
    elif re.fullmatch(r"\d{5}_(lr|hr)", name):
        raise RecordError(f"no labels: PTB-XL record not in a {PTBXL_DATABASE} next to the records or given with --labels")
    else:
        reason = comments.get("reason for admission", "")
        raw = [reason] if reason else []
        split_dx(reason, "'Reason for admission'")  # bounded before parse_dx looks each code up
        codes = parse_dx(reason) if reason else []
        patient, age, sex, domain = _ptb_patient(hea_path), parse_age(comments.get("age")), parse_sex(comments.get("sex")), None
    return RawRecord(
        record_id=name,
        source_path=str(hea_path),
        signal=signal,
        fs=float(header.fs),
        label_codes_raw=raw,
        label_codes=codes,
        patient_id=patient,
        age=age,
        sex=sex,
        header_gain=gains[0],
        gain_mismatch=False,  # native headers are right: their gain is what converts to mV
        leads_original=int(header.n_sig),
        source_domain=domain,
    )
