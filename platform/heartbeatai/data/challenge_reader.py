"""PhysioNet/CinC Challenge 2020/2021 records: WFDB `.hea` + MATLAB `.mat` holding `val`.

The header is parsed here rather than by `wfdb.rdheader` for two reasons measured on
the real releases: wfdb rejects the Georgia/PTB-XL headers whose first line carries the
`.mat` suffix (`E07500.mat 12 500 5000`), and it takes ~6 ms per header, more than the
whole per-record budget of prepare (200 records/s per core). The format itself is
WFDB's (record line, one line per signal, `#` comments); the data are read by
matlab_file.py, which checks the matrix's declared class and size against the record-size
limit and the file, then hands its values over chunk by chunk (scipy.io.loadmat, which
the challenge's example code uses, holds three copies of the matrix at once).

Decoding is strict: `val` must be a real, non-boolean numeric matrix. Integer classes are
the challenge's format; float matrices (some Ningbo records, which hold NaNs) are read as
microvolts too, their NaNs and infinities set to 0 and flagged by prepare. Complex,
boolean (logical), char, cell and struct `val`s are skipped with the reason, and so are
values beyond what the prepared float16 signal can hold (+-60 V).

Units: `val` holds microvolts in every release, whatever the header's gain says (the
2020 release writes 4880/mV for Georgia, 200/mV for PTB-XL, 2000000/mV for PTB). The
stated gain is kept and a contradiction flagged, never applied.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from heartbeatai.data import matlab_file
from heartbeatai.data.raw_record import (
    CHUNK_SAMPLES,
    MAX_ABS_MV,
    MAX_RECORD_BYTES,
    RawRecord,
    RecordError,
    check_peak,
    check_rate_and_length,
    check_record_bytes,
    parse_age,
    parse_sex,
    peak_of,
    split_dx,
    standard_lead_order,
)
from heartbeatai.data.source_files import MAX_HEADER_BYTES, open_regular, read_bounded, resolve_named
from heartbeatai.labels import parse_dx

CHALLENGE_GAIN_PER_MV = 1000.0  # the stored values are microvolts
# C0/C1 control characters: a few may sit in a hand-edited comment, many mean binary data
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_UNIT_PER_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3, "nv": 1e-6}


@dataclass
class WfdbHeader:
    record_name: str
    n_sig: int
    fs: float
    sig_len: int | None
    file_names: list[str]
    formats: list[str]
    gains_per_mv: list[float | None]  # None where the header gives no usable gain
    lead_names: list[str]
    comments: dict[str, str] = field(default_factory=dict)  # lower-cased key -> value
    signal_tokens: list[list[str]] = field(default_factory=list)  # each signal line, split
    encoding: str = "utf-8"  # how the header's bytes were decoded

    def path_name(self, name: str) -> str:
        """A file name of the header as the file system spells it. A non-UTF-8 header is
        decoded as Latin-1, which turns its byte 0xE9 into 'é'; the file on disk is named by
        the byte itself, which Python spells with a surrogate (os.fsdecode). Without this,
        such a file was skipped as missing although it exists."""
        return name if self.encoding == "utf-8" else os.fsdecode(name.encode(self.encoding))


def decode_header(data: bytes) -> tuple[str, str]:
    """(text, encoding) of a header's bytes: UTF-8, else Latin-1 (a non-UTF-8 byte, seen in
    hand-edited headers, is not fatal)."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def read_text(path: Path, root: str | Path | None = None) -> str:
    """Header text, read bounded from a regular file inside `root`."""
    return decode_header(read_bounded(path, root if root is not None else Path(path).parent, "header",
                                      MAX_HEADER_BYTES))[0]


def read_header(path: Path, root: str | Path | None = None) -> WfdbHeader:
    """The parsed header of `path`, read bounded from a regular file inside `root`."""
    text, encoding = decode_header(read_bounded(path, root if root is not None else Path(path).parent, "header",
                                                MAX_HEADER_BYTES))
    return parse_header(text, encoding)


def _number(token: str, what: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise RecordError(f"bad {what} {token!r} in header") from None


def _integer(token: str, what: str) -> int:
    value = _number(token, what)
    if not math.isfinite(value) or value != int(value):
        raise RecordError(f"bad {what} {token!r} in header")
    return int(value)


def _gain_per_mv(spec: str) -> float | None:
    """`1000/mV`, `1000.0(0)/mV`, `1000/mv`, `4880` -> gain in ADC units per mV."""
    gain_text, _, units = spec.partition("/")
    gain_text = gain_text.split("(")[0]
    try:
        gain = float(gain_text)
    except ValueError:
        raise RecordError(f"bad gain {spec!r} in header") from None
    if gain == 0:  # WFDB: 0 means "uncalibrated", i.e. the default 200/mV
        return None
    scale = _UNIT_PER_MV.get(units.strip().lower(), 1.0) if units else 1.0
    return gain * scale


def parse_header(text: str, encoding: str = "utf-8") -> WfdbHeader:
    if len(_CONTROL_CHARS.findall(text)) > len(text) // 20:
        raise RecordError("header is binary data, not WFDB text")
    lines = [line.strip() for line in text.splitlines()]
    comments: dict[str, str] = {}
    body: list[str] = []
    for line in lines:
        if not line:
            continue
        if line.startswith("#"):
            # `#Dx: 1`, `# Dx: 1` and `#Dx 1` all occur
            key, sep, value = line.lstrip("#").strip().partition(":")
            if sep:
                comments.setdefault(key.strip().lower(), value.strip())
            continue
        body.append(line)
    if not body:
        raise RecordError("empty header")
    record = body[0].split()
    if len(record) < 2:
        raise RecordError(f"bad record line {body[0][:60]!r}")
    name = record[0]
    if "/" in name:
        raise RecordError("multi-segment records are not supported")
    for suffix in (".mat", ".hea", ".dat"):  # `E07500.mat 12 500 5000` (Georgia, PTB-XL 2020)
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    n_sig = _integer(record[1], "signal count")
    fs = _number(record[2].split("/")[0].split("(")[0], "sampling rate") if len(record) > 2 else 250.0
    sig_len = _integer(record[3], "length") if len(record) > 3 else None
    check_rate_and_length(fs, sig_len if sig_len is not None else 1, n_sig)
    signal_lines = body[1 : 1 + n_sig]
    if len(signal_lines) < n_sig:
        raise RecordError(f"header announces {n_sig} signals but describes {len(signal_lines)}")
    files, formats, gains, names, token_lists = [], [], [], [], []
    for line in signal_lines:
        tokens = line.split()
        token_lists.append(tokens)
        if len(tokens) < 2:
            raise RecordError(f"bad signal line {line[:60]!r}")
        files.append(tokens[0])
        formats.append(tokens[1])
        gains.append(_gain_per_mv(tokens[2]) if len(tokens) > 2 else None)
        names.append(" ".join(tokens[8:]) if len(tokens) > 8 else "")
    return WfdbHeader(name, n_sig, fs, sig_len, files, formats, gains, names, comments, token_lists, encoding)


MAX_MAT_FILE_BYTES = MAX_RECORD_BYTES + (1 << 20)  # the matrix plus headers and small variables


def _read_val(mat_path: Path, header: WfdbHeader, order: list[int]) -> np.ndarray:
    """The standard leads of `val` as (samples, 12) float32 mV, over the header's window.

    Converted chunk by chunk from the file (matlab_file.numeric_chunks): the record's
    memory is the float32 signal plus one chunk, never the matrix read whole beside it."""
    name = mat_path.name
    with open_regular(mat_path, "data file") as handle:
        size = matlab_file.file_size(handle)
        if size > MAX_MAT_FILE_BYTES:
            raise RecordError(f"{name} is {size} bytes, beyond the {MAX_MAT_FILE_BYTES / 1e6:.1f} MB limit")
        found, mat_header = matlab_file.variables(handle, name, wanted={"val"})
        var = found.get("val")
        if var is None:
            raise RecordError(f"{name} holds no 'val' matrix")
        check_val_declaration(var, header, name)
        signals, samples = var.dims
        wanted = samples if header.sig_len is None else header.sig_len
        signal = np.empty((wanted, len(order)), dtype=np.float32)
        filled, peak = 0, 0.0
        chunks = matlab_file.numeric_chunks(handle, mat_header, var, MAX_RECORD_BYTES, name, signals * CHUNK_SAMPLES)
        for chunk in chunks:
            block = chunk.reshape(-1, signals)[: wanted - filled]  # column-major (signals, samples): a row a sample
            peak = max(peak, peak_of(block))
            if peak <= MAX_ABS_MV * CHALLENGE_GAIN_PER_MV:  # else refused below, for the largest value
                signal[filled:filled + len(block)] = block[:, order].astype(np.float32) / np.float32(
                    CHALLENGE_GAIN_PER_MV)
            filled += len(block)
            if filled == wanted:
                break
    check_peak(peak, 1.0 / CHALLENGE_GAIN_PER_MV, f"'val' in {name}")
    return signal


def check_val_declaration(var: matlab_file.MatVariable, header: WfdbHeader, name: str) -> None:
    """`val` as the file declares it, before a byte of it is read: class, shape, size."""
    if var.logical:
        raise RecordError(f"'val' in {name} is boolean (logical), not microvolts")
    if var.complex:
        raise RecordError(f"'val' in {name} is complex ({var.describe()}): not a signal in microvolts")
    if var.mclass not in matlab_file.NUMERIC_CLASSES:
        raise RecordError(f"'val' in {name} is a {var.mclass} array ({var.describe()}), not a numeric matrix")
    if len(var.dims) != 2:
        raise RecordError(f"'val' in {name} is not a numeric matrix (shape {var.describe()})")
    signals, samples = var.dims
    if signals != header.n_sig:
        raise RecordError(f"'val' has {signals} signals, header says {header.n_sig}")
    check_record_bytes(samples, signals, var.itemsize or 8, f"'val' in {name}")
    if header.sig_len is not None and samples < header.sig_len:
        raise RecordError(f"truncated {name}: {samples} of {header.sig_len} samples")
    check_rate_and_length(header.fs, samples if header.sig_len is None else header.sig_len)


def read_challenge(hea_path: str | Path, header: WfdbHeader | None = None, *, root: str | Path | None = None) -> RawRecord:
    """One challenge-format record; RecordError with the reason when it cannot be read.
    `header`: the already parsed header of `hea_path`, when the caller has it. `root`: the
    source folder the record was found in (default: the header's folder); the header and
    its data file must resolve inside it."""
    hea_path = Path(hea_path)
    root = root if root is not None else hea_path.parent
    if header is None:
        header = read_header(hea_path, root)
    order = standard_lead_order(header.lead_names)
    data_files = {header.path_name(header.file_names[i]) for i in order}
    if len(data_files) != 1:
        raise RecordError(f"standard leads spread over several files {sorted(data_files)[:4]}"[:200])
    mat_path = resolve_named(hea_path.parent, data_files.pop(), root, "data file")
    signal = _read_val(mat_path, header, order)
    check_rate_and_length(header.fs, len(signal))
    gains = [header.gains_per_mv[i] for i in order]
    stated = next((g for g in gains if g is not None), None)
    dx = header.comments.get("dx", "")
    raw_codes = split_dx(dx)  # bounded before parse_dx looks each code up
    return RawRecord(
        record_id=hea_path.stem,
        source_path=str(hea_path),
        signal=signal,
        fs=header.fs,
        label_codes_raw=raw_codes,
        label_codes=parse_dx(dx),
        age=parse_age(header.comments.get("age")),
        sex=parse_sex(header.comments.get("sex")),
        header_gain=stated,
        # a NaN or infinite gain contradicts the known units as much as 4880/mV does
        gain_mismatch=any(g is not None and not abs(g - CHALLENGE_GAIN_PER_MV) <= 1e-6 for g in gains),
        leads_original=header.n_sig,
    )
