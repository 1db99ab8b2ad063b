"""Raw records -> prepared dataset (DESIGN.md, Prepared dataset).

Finds records under the sources, reads and preprocesses them in worker processes
(units to mV, standard lead order, NaN -> 0, length cap, polyphase resampling, hashes)
and appends them through PreparedWriter, whose journal makes a rerun skip finished
records. A bad record is skipped with a one-line reason, never fatal.
"""

from __future__ import annotations

import math
import os
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from tqdm import tqdm

from heartbeatai.data import signal_hash
from heartbeatai.data.challenge_reader import parse_header, read_challenge, read_text
from heartbeatai.data.cpsc_reader import CPSC_REFERENCE, is_cpsc_reference, load_reference, read_cpsc_native
from heartbeatai.data.domains import DomainError, resolve_domain
from heartbeatai.data.prepared_writer import PreparedRecord, PreparedWriter
from heartbeatai.data.ptbxl_reader import PTBXL_DATABASE, PtbxlEntry, is_ptbxl_database, load_ptbxl_database, read_native_wfdb
from heartbeatai.data.raw_record import RawRecord, RecordError
from heartbeatai.labels import scored_vocabulary

ALLOWED_FS = (500, 250, 100)
# float16 tops out at 65504; a value beyond this many mV is corrupt data, not an ECG.
_MAX_ABS_MV = 60_000.0


@dataclass(frozen=True)
class PrepareSettings:
    fs: int = 500
    max_seconds: float = 60.0
    include_st: bool = False
    domain_map: dict[str, str] = field(default_factory=dict)

    def params(self) -> dict:
        """What a resumed run must share with the run it continues."""
        return {
            "max_seconds": self.max_seconds,
            "resampling": "scipy.signal.resample_poly",
            "units": "mV",
            "nan": "set to 0, flagged in nan_filled",
            "domain_map": dict(sorted(self.domain_map.items())),
        }


@dataclass
class LabelTables:
    ptbxl: dict[str, PtbxlEntry] = field(default_factory=dict)
    cpsc: dict[str, list[int]] = field(default_factory=dict)

    def load(self, path: Path) -> None:
        """Add a PTB-XL database or a CPSC2018 REFERENCE.csv (recognised by its columns)."""
        try:
            columns = list(pd.read_csv(path, nrows=0).columns)
        except (OSError, ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: unreadable label file ({str(err).splitlines()[0]})") from None
        if is_ptbxl_database(columns):
            self.ptbxl.update(load_ptbxl_database(path))
        elif is_cpsc_reference(columns):
            self.cpsc.update(load_reference(path))
        else:
            raise ValueError(f"{path}: neither a PTB-XL database nor a CPSC2018 REFERENCE.csv (columns {columns[:6]})")


@dataclass(frozen=True)
class Candidate:
    """A file that should hold a record: a `.hea`, or a `.mat` with no header beside it."""

    path: str
    kind: str  # "hea" | "mat" | "error" (a folder that could not be listed)
    error: str = ""


def discover(sources: list[Path]) -> tuple[list[Candidate], list[Path]]:
    """Record candidates and standard-named label files under the sources.

    Walks folders itself so symbolic links are followed but a link loop is visited
    once (os.walk would either skip linked folders or loop).
    """
    candidates: list[Candidate] = []
    label_files: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for source in sources:
        for ancestor in list(source.resolve().parents)[:2]:  # e.g. SRC = ptb-xl/records100
            for name in (PTBXL_DATABASE, CPSC_REFERENCE):
                if (ancestor / name).is_file():
                    label_files.append(ancestor / name)
        if not source.is_dir():
            candidates.append(_file_candidate(source.absolute()))
            continue
        stack = [source.absolute()]
        while stack:
            folder = stack.pop()
            try:
                info = folder.stat()
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as err:
                candidates.append(Candidate(str(folder), "error", f"unreadable folder: {err.strerror or err}"))
                continue
            names = {e.name for e in entries}
            subfolders = []
            for entry in entries:
                lower = entry.name.lower()
                if lower.endswith(".hea"):
                    candidates.append(Candidate(entry.path, "hea"))
                elif lower.endswith(".mat"):
                    if entry.name[:-4] + ".hea" not in names:
                        candidates.append(Candidate(entry.path, "mat"))
                elif entry.name in (PTBXL_DATABASE, CPSC_REFERENCE):
                    label_files.append(Path(entry.path))
                else:
                    try:
                        if entry.is_dir():
                            subfolders.append(Path(entry.path))
                    except OSError:  # a link loop or dangling link: nothing to read there
                        pass
            stack.extend(reversed(subfolders))
    unique = list({c.path: c for c in candidates}.values())  # overlapping sources
    return unique, list(dict.fromkeys(label_files))


def _file_candidate(path: Path) -> Candidate:
    """A record named on the command line by any of its files (.hea, .mat, .dat)."""
    header = path.with_suffix(".hea")
    if path.suffix.lower() == ".hea" or header.exists():
        return Candidate(str(header if header.exists() else path), "hea")
    if path.suffix.lower() == ".mat":
        return Candidate(str(path), "mat")
    return Candidate(str(path), "error", "not a record file (.hea, or a CPSC2018 .mat)")


# --- worker side -------------------------------------------------------------------

_worker: dict = {}


def _init_worker(settings: PrepareSettings, labels: LabelTables) -> None:
    _worker["settings"] = settings
    _worker["labels"] = labels
    _worker["vocabulary"] = scored_vocabulary(include_st=True)


def read_record(candidate: Candidate, labels: LabelTables) -> RawRecord:
    path = Path(candidate.path)
    if candidate.kind == "error":
        raise RecordError(candidate.error)
    if candidate.kind == "mat":
        return read_cpsc_native(path, labels.cpsc)
    header = parse_header(read_text(path))
    if any(name.lower().endswith(".mat") for name in header.file_names):
        return read_challenge(path, header)
    return read_native_wfdb(path, labels.ptbxl)


def preprocess(raw: RawRecord, settings: PrepareSettings) -> PreparedRecord:
    signal = np.asarray(raw.signal, dtype=np.float32)
    if signal.ndim != 2 or signal.shape[1] != 12 or len(signal) == 0:
        raise RecordError(f"signal has shape {signal.shape}, expected (samples, 12)")
    missing = ~np.isfinite(signal)
    nan_filled = bool(missing.any())
    if nan_filled:
        if missing.all():
            raise RecordError("every value is NaN")
        signal = np.where(missing, np.float32(0), signal)
    if not np.any(signal.max(axis=0) > signal.min(axis=0)):
        raise RecordError("flat signal: every lead is constant")
    domain = resolve_domain(raw.record_id, Path(raw.source_path), raw.source_domain, settings.domain_map)
    # Cut at the cap before resampling (plus a margin for the filter), then exactly after.
    cap_original = math.ceil(settings.max_seconds * raw.fs)
    truncated = len(signal) > cap_original
    margin = math.ceil(raw.fs * 0.2)
    resampled = signal_hash.resample(signal[: cap_original + margin], raw.fs, settings.fs)
    resampled = resampled[: int(settings.max_seconds * settings.fs)]
    stored = np.clip(resampled, -_MAX_ABS_MV, _MAX_ABS_MV).astype(np.float16)
    vocabulary = _worker.get("vocabulary") or scored_vocabulary(include_st=True)
    canonical = list(dict.fromkeys(vocabulary.canonical(code) for code in raw.label_codes))
    return PreparedRecord(
        record_id=raw.record_id,
        domain=domain,
        source_path=raw.source_path,
        patient_id=raw.patient_id or raw.record_id,
        age=raw.age,
        sex=raw.sex,
        fs_original=float(raw.fs),
        length_original=int(len(signal)),
        label_codes_raw=list(raw.label_codes_raw),
        label_codes=canonical,
        hash_exact=signal_hash.hash_exact(signal),
        hash_coarse=signal_hash.hash_coarse(signal, raw.fs),
        header_gain=raw.header_gain,
        gain_mismatch=bool(raw.gain_mismatch),
        nan_filled=nan_filled,
        truncated=truncated,
        leads_original=int(raw.leads_original),
        signal=stored,
    )


def prepare_one(candidate: Candidate) -> tuple[str, PreparedRecord | None, str]:
    """(key, record, "") or (key, None, reason). Never raises: one bad file must not
    take a worker, and with it a chunk of other records, down."""
    try:
        raw = read_record(candidate, _worker["labels"])
        return candidate.path, preprocess(raw, _worker["settings"]), ""
    except (RecordError, DomainError) as err:
        return candidate.path, None, str(err)
    except MemoryError:
        return candidate.path, None, "out of memory (record too large)"
    except Exception as err:  # noqa: BLE001 - report, never crash the run
        text = str(err).splitlines()[0][:160] if str(err) else ""
        return candidate.path, None, f"unexpected {type(err).__name__}: {text}".rstrip(": ")


# --- driver ------------------------------------------------------------------------


@dataclass
class PrepareSummary:
    out: Path
    found: int  # over every run into this directory: prepared + skipped
    prepared: int
    skipped: int
    resumed: int  # prepared by an earlier run, not redone
    domains: dict[str, int]
    reasons: Counter
    fingerprint: str


def _results(candidates: list[Candidate], workers: int, settings: PrepareSettings, labels: LabelTables) -> Iterator:
    if workers <= 1 or len(candidates) < 2:
        _init_worker(settings, labels)
        yield from map(prepare_one, candidates)
        return
    chunksize = max(1, min(32, len(candidates) // (workers * 8)))
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(settings, labels)) as pool:
        try:
            yield from pool.map(prepare_one, candidates, chunksize=chunksize)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _unify_near_duplicates(writer: PreparedWriter, records: pd.DataFrame, fs: int, progress: bool) -> pd.DataFrame:
    """Give records that are one recording re-released at another rate or gain one hash_coarse."""
    rows = tqdm(
        records[["shard", "offset", "length"]].itertuples(index=False),
        total=len(records),
        desc="duplicates",
        unit="rec",
        file=sys.stderr,
        disable=not progress,
        mininterval=1.0,
    )
    sketches = [signal_hash.sketch(writer.read_signal(*row).astype(np.float32), fs) for row in rows]
    records = records.copy()
    for group in signal_hash.near_duplicate_groups(sketches):
        part = records.iloc[group]
        keeper = part.sort_values("record_id").index[0]
        records.loc[part.index, "hash_coarse"] = records.at[keeper, "hash_coarse"]
    return records


def prepare(
    sources: list[Path],
    out: Path,
    settings: PrepareSettings,
    *,
    workers: int = 1,
    label_files: list[Path] = (),
    progress: bool = True,
) -> PrepareSummary:
    """Prepare every record under `sources` into `out` (resuming what is there)."""
    labels = LabelTables()
    for path in label_files:
        labels.load(path)  # ValueError for a user-given file: the caller reports it
    candidates, found_labels = discover(sources)
    for path in found_labels:
        if path not in label_files:
            try:
                labels.load(path)
            except ValueError as err:
                print(f"warning: {err}", file=sys.stderr)
    vocabulary = scored_vocabulary(include_st=settings.include_st)
    writer = PreparedWriter(out, fs=settings.fs, vocabulary=vocabulary, params=settings.params())
    try:
        todo = [c for c in candidates if not writer.is_done(c.path)]
        resumed = len(candidates) - len(todo)
        bar = tqdm(total=len(todo), desc="prepare", unit="rec", file=sys.stderr, disable=not progress, mininterval=1.0)
        with bar:
            for key, record, reason in _results(todo, workers, settings, labels):
                if record is None:
                    writer.skip(key, reason)
                else:
                    writer.add(key, record)
                bar.update()
        records = _unify_near_duplicates(writer, writer.index(), settings.fs, progress)
        records = writer.finish(records, extra={"sources": [str(s.absolute()) for s in sources]})
    finally:
        writer.close()
    reasons = Counter(reason for reason in writer.skipped.values())
    return PrepareSummary(
        out=out,
        found=len(writer.prepared) + len(writer.skipped),
        prepared=len(records),
        skipped=len(writer.skipped),
        resumed=resumed,
        domains=records["domain"].value_counts().sort_index().to_dict(),
        reasons=reasons,
        fingerprint=writer.manifest["fingerprint"],
    )
