"""Raw records -> prepared dataset (DESIGN.md, Prepared dataset).

Finds records under the sources, reads and preprocesses them in worker processes
(units to mV, standard lead order, NaN -> 0, length cap, polyphase resampling, hashes)
and appends them through PreparedWriter, whose journal makes a rerun skip finished
records whose files are unchanged (size, mtime and content hash: source_stamp.py); a
changed record is prepared again and one whose source is gone leaves the dataset, so a
rerun gives what a fresh prepare would. A bad record is skipped with a one-line reason,
never fatal.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from tqdm import tqdm

from heartbeatai.data import plausibility, signal_hash
from heartbeatai.data.challenge_reader import read_challenge, read_header
from heartbeatai.data.cpsc_reader import CPSC_REFERENCE, is_cpsc_reference, load_reference, read_cpsc_native
from heartbeatai.data.domains import DomainError, resolve_domain
from heartbeatai.data.label_table import MAX_NOTES, LabelTable, read_label_rows
from heartbeatai.data.prepared import MANIFEST_FILE, RECORDS_FILE
from heartbeatai.data.prepared_writer import PreparedRecord, PreparedWriter
from heartbeatai.data.ptbxl_reader import PTBXL_DATABASE, is_ptbxl_database, load_ptbxl_database, read_native_wfdb
from heartbeatai.data.raw_record import (
    CHUNK_SAMPLES,
    MAX_ABS_MV,
    MAX_RECORD_BYTES,
    RawRecord,
    RecordError,
    check_code_count,
)
from heartbeatai.data.source_stamp import record_stamp, stamp_change
from heartbeatai.labels import scored_vocabulary
from heartbeatai.processes import die_with_parent

ALLOWED_FS = (500, 250, 100)


@dataclass(frozen=True)
class PrepareSettings:
    fs: int = 500
    max_seconds: float = 60.0
    include_st: bool = False
    domain_map: dict[str, str] = field(default_factory=dict)
    keep_implausible: bool = False  # keep records whose amplitude is implausible in mV, flagged

    def params(self) -> dict:
        """What a resumed run must share with the run it continues."""
        return {
            "max_seconds": self.max_seconds,
            "resampling": "scipy.signal.resample_poly",
            "units": "mV",
            "nan": "set to 0, flagged in nan_filled",
            "domain_map": dict(sorted(self.domain_map.items())),
            "plausibility": {**plausibility.thresholds(),
                             "implausible": "keep, flagged" if self.keep_implausible else "skip"},
        }


@dataclass
class LabelTables:
    ptbxl: LabelTable = field(default_factory=lambda: LabelTable(PTBXL_DATABASE))
    cpsc: LabelTable = field(default_factory=lambda: LabelTable(CPSC_REFERENCE))

    def load(self, path: Path) -> None:
        """Add a PTB-XL database or a CPSC2018 REFERENCE.csv (recognised by its columns).
        Bad rows are kept as reasons (`problems`) of the records they name, not raised."""
        columns, _ = read_label_rows(path)  # ValueError: not a regular file, too large, not CSV
        if is_ptbxl_database(columns):
            self.ptbxl.merge(load_ptbxl_database(path))
        elif is_cpsc_reference(columns):
            self.cpsc.merge(load_reference(path))
        else:
            raise ValueError(f"{path}: neither a PTB-XL database nor a CPSC2018 REFERENCE.csv "
                             f"(columns {[c[:20] for c in columns[:6]]})")

    @property
    def notes(self) -> list[str]:
        return [*self.cpsc.notes, *self.ptbxl.notes]


@dataclass(frozen=True)
class Candidate:
    """A file that should hold a record: a `.hea`, or a `.mat` with no header beside it."""

    path: str
    kind: str  # "hea" | "mat" | "error" (a folder that could not be listed or leads outside)
    error: str = ""
    root: str = ""  # the source folder it was found in, resolved: its files must stay inside


def discover(sources: list[Path]) -> tuple[list[Candidate], list[Path]]:
    """Record candidates and standard-named label files under the sources.

    Walks folders itself so symbolic links are followed but a link loop is visited
    once (os.walk would either skip linked folders or loop). A link to a folder outside
    the source folder is not followed: it is reported as a skipped entry, since every
    file of a record must lie inside the tree it was found in (source_files.py).
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
        root = os.path.realpath(source)
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
                    candidates.append(Candidate(entry.path, "hea", root=root))
                elif lower.endswith(".mat"):
                    if entry.name[:-4] + ".hea" not in names:
                        candidates.append(Candidate(entry.path, "mat", root=root))
                elif entry.name in (PTBXL_DATABASE, CPSC_REFERENCE):
                    label_files.append(Path(entry.path))
                else:
                    try:
                        if not entry.is_dir():
                            continue
                    except OSError:  # a link loop or dangling link: nothing to read there
                        continue
                    if entry.is_symlink() and not _inside(os.path.realpath(entry.path), root):
                        candidates.append(Candidate(entry.path, "error", "folder link leads outside the source folder",
                                                    root=root))
                        continue
                    subfolders.append(Path(entry.path))
            stack.extend(reversed(subfolders))
    unique = list({c.path: c for c in candidates}.values())  # overlapping sources
    return unique, list(dict.fromkeys(label_files))


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _file_candidate(path: Path) -> Candidate:
    """A record named on the command line by any of its files (.hea, .mat, .dat); its
    source folder is the folder it lies in."""
    root = os.path.realpath(path.parent)
    header = path.with_suffix(".hea")
    if path.suffix.lower() == ".hea" or header.exists():
        return Candidate(str(header if header.exists() else path), "hea", root=root)
    if path.suffix.lower() == ".mat":
        return Candidate(str(path), "mat", root=root)
    return Candidate(str(path), "error", "not a record file (.hea, or a CPSC2018 .mat)", root=root)


# --- how many workers memory allows ------------------------------------------------

# A worker holds one record at a time, at most 3x the record-size limit (measured:
# `python -m benchmarks data`, peak memory per raw MB), plus its own interpreter with numpy,
# scipy, pandas and wfdb loaded (196 MB RSS measured preparing a small record).
WORKER_BASELINE_BYTES = 200_000_000
MEMORY_PER_WORKER = 3 * MAX_RECORD_BYTES + WORKER_BASELINE_BYTES


def available_memory() -> int | None:
    """Bytes this process may still take: the kernel's MemAvailable, or the cgroup's limit
    less its use where that is lower (a container, a batch job); None where neither is known."""
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit != "max" and int(limit) < 2**60:
                found.append(max(0, int(limit) - int(Path(usage_file).read_text().strip())))
        except (OSError, ValueError):
            continue
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            return None
    return min(found)


def default_workers() -> tuple[int, str]:
    """As many workers as there are CPUs and as memory allows (MEMORY_PER_WORKER x workers
    <= available memory), at least one; and the line that says how that was decided."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    available = available_memory()
    if available is None:
        return cpus, f"workers: {cpus} (CPUs; available memory unknown)"
    by_memory = max(1, available // MEMORY_PER_WORKER)
    workers = min(cpus, by_memory)
    return workers, (f"workers: {workers} (CPUs {cpus}; memory allows {by_memory}: {available / 1e9:.1f} GB available, "
                     f"{MEMORY_PER_WORKER / 1e9:.2f} GB a worker = 3 x the {MAX_RECORD_BYTES / 1e6:.1f} MB record limit "
                     f"+ {WORKER_BASELINE_BYTES / 1e6:.0f} MB); --workers sets it")


# --- worker side -------------------------------------------------------------------

_worker: dict = {}


def _init_worker(settings: PrepareSettings, labels: LabelTables, pooled: bool = False) -> None:
    if pooled:  # a killed prepare leaves no pool worker behind
        die_with_parent()
    _worker["settings"] = settings
    _worker["labels"] = labels
    _worker["vocabulary"] = scored_vocabulary(include_st=True)


def read_record(candidate: Candidate, labels: LabelTables) -> RawRecord:
    path = Path(candidate.path)
    root = candidate.root or os.path.realpath(path.parent)
    if candidate.kind == "error":
        raise RecordError(candidate.error)
    if candidate.kind == "mat":
        return read_cpsc_native(path, labels.cpsc, root=root)
    header = read_header(path, root)
    if any(name.lower().endswith(".mat") for name in header.file_names):
        return read_challenge(path, header, root=root)
    return read_native_wfdb(path, labels.ptbxl, root=root, header=header)


def _utf8(name: str) -> str:
    """A name taken from the file system, as text Parquet can hold: a byte that is not
    UTF-8 (Python's surrogate for it) is written as `\\xe9`. Such a header's record was
    otherwise prepared and then crashed the writing of the index."""
    return os.fsencode(name).decode("utf-8", "backslashreplace") if not name.isascii() else name


def _fill_missing(signal: np.ndarray) -> tuple[bool, bool]:
    """Set NaN and infinities to 0 in place, a block of rows at a time (a whole-record mask
    and copy would cost 1.5x the float32 signal); (any was set, any value is finite)."""
    filled, finite = False, False
    for start in range(0, len(signal), CHUNK_SAMPLES):
        block = signal[start:start + CHUNK_SAMPLES]
        missing = ~np.isfinite(block)
        if missing.any():
            filled = True
            finite = finite or not missing.all()
            block[missing] = 0
        else:
            finite = True
    return filled, finite


def preprocess(raw: RawRecord, settings: PrepareSettings) -> PreparedRecord:
    """One record, read, to what the dataset stores. Its float32 signal at the original
    rate is the only whole-record array: everything else goes a block or a lead at a
    time, or works on the stored window (memory per record at most 3x its raw size)."""
    check_code_count(len(raw.label_codes_raw), "the label source")  # every reader's labels, one bound
    signal = np.asarray(raw.signal, dtype=np.float32)
    if not signal.flags.writeable:  # NaNs are set to 0 in place
        signal = signal.copy()
    if signal.ndim != 2 or signal.shape[1] != 12 or len(signal) == 0:
        raise RecordError(f"signal has shape {signal.shape}, expected (samples, 12)")
    nan_filled, any_finite = _fill_missing(signal)
    if not any_finite:
        raise RecordError("every value is NaN")
    peak_to_peak = plausibility.peak_to_peak(signal)
    if not np.any(peak_to_peak > 0):
        raise RecordError("flat signal: every lead is constant")
    quality, why = plausibility.assess(peak_to_peak)
    if quality == plausibility.IMPLAUSIBLE_AMPLITUDE and not settings.keep_implausible:
        raise RecordError(why)
    domain = resolve_domain(raw.record_id, Path(raw.source_path), raw.source_domain, settings.domain_map)
    # Cut at the cap before resampling (plus a margin for the filter), then exactly after.
    cap_original = math.ceil(settings.max_seconds * raw.fs)
    truncated = len(signal) > cap_original
    margin = math.ceil(raw.fs * 0.2)
    resampled = signal_hash.resample(signal[: cap_original + margin], raw.fs, settings.fs)
    resampled = resampled[: int(settings.max_seconds * settings.fs)]
    # The readers refuse larger values; what is clipped here is the filter's overshoot.
    stored = np.clip(resampled, -MAX_ABS_MV, MAX_ABS_MV).astype(np.float16)
    vocabulary = _worker.get("vocabulary") or scored_vocabulary(include_st=True)
    canonical = list(dict.fromkeys(vocabulary.canonical(code) for code in raw.label_codes))
    return PreparedRecord(
        record_id=_utf8(raw.record_id),
        domain=_utf8(domain),
        source_path=_utf8(raw.source_path),
        patient_id=_utf8(raw.patient_id or raw.record_id),
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
        quality=quality,
    )


UNCHANGED = "unchanged"  # prepare_task's reason for a source whose stamp matches the journal's


def candidate_stamp(candidate: Candidate, labels: LabelTables) -> dict:
    """What the candidate's record is made of now (source_stamp.py), its label row included."""
    if candidate.kind == "error":
        return {"error": candidate.error}
    stem = Path(candidate.path).stem
    entry = labels.cpsc.get(stem) if candidate.kind == "mat" else labels.ptbxl.get(stem)
    return record_stamp(candidate.kind, candidate.path, candidate.root, entry)


def prepare_task(task: tuple[Candidate, dict | None]) -> tuple[str, PreparedRecord | None, str, dict]:
    """(key, record or None, reason, stamp) for (candidate, the stamp it was prepared from
    or None). The stamp is taken before the files are read: a file changed while it is read
    leaves the older stamp in the journal, so the next run prepares it again."""
    candidate, previous = task
    stamp = candidate_stamp(candidate, _worker["labels"])
    if previous is not None and stamp == previous:
        return candidate.path, None, UNCHANGED, stamp
    return (*prepare_one(candidate), stamp)


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
    found: int  # records under the sources now: prepared + skipped
    prepared: int
    skipped: int
    resumed: int  # prepared by an earlier run from the same files, not redone
    domains: dict[str, int]
    reasons: Counter
    fingerprint: str
    label_notes: int = 0  # label-file rows skipped or repeated that named no skipped record
    reprepared: Counter = field(default_factory=Counter)  # why earlier records were redone -> count
    quality: dict[str, int] = field(default_factory=dict)  # quality flag -> records (plausibility.py)
    dropped: int = 0  # records of an earlier run whose source is gone


def _results(tasks: list[tuple[Candidate, dict | None]], workers: int, settings: PrepareSettings,
             labels: LabelTables) -> Iterator:
    if workers <= 1 or len(tasks) < 2:
        _init_worker(settings, labels)
        yield from map(prepare_task, tasks)
        return
    chunksize = max(1, min(32, len(tasks) // (workers * 8)))
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(settings, labels, True)) as pool:
        try:
            yield from pool.map(prepare_task, tasks, chunksize=chunksize)
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


class NothingPreparedError(ValueError):
    """No record could be prepared: the one-line reason, and the summary of what was skipped.
    No prepared dataset is left behind (an empty one would pass for data)."""

    def __init__(self, message: str, summary: PrepareSummary):
        super().__init__(message)
        self.summary = summary


def _nothing_prepared(sources: list[Path], found: int, reasons: Counter) -> str:
    if not found:
        names = ", ".join(str(s) for s in sources[:3]) + (" ..." if len(sources) > 3 else "")
        return f"no record could be prepared: no record files (.hea, or CPSC2018 .mat) under {names}"
    reason, count = reasons.most_common(1)[0]
    return (f"no record could be prepared: all {found} found were skipped; most often ({count} of {found}): "
            f"{reason}")


def prepare(
    sources: list[Path],
    out: Path,
    settings: PrepareSettings,
    *,
    workers: int = 1,
    label_files: list[Path] = (),
    progress: bool = True,
) -> PrepareSummary:
    """Prepare every record under `sources` into `out` (resuming what is there).

    NothingPreparedError when not one record could be prepared: then `out` holds no
    prepared dataset (removed when this call created it)."""
    labels = LabelTables()
    for path in label_files:
        labels.load(path)  # ValueError for a user-given file: the caller reports it
    candidates, found_labels = discover(sources)
    label_notes: list[str] = []
    for path in found_labels:
        if path not in label_files:
            try:
                labels.load(path)
            except ValueError as err:
                print(f"warning: {err}", file=sys.stderr)
                label_notes.append(str(err))
    label_notes.extend(labels.notes)
    vocabulary = scored_vocabulary(include_st=settings.include_st)
    created = not out.exists()
    writer = PreparedWriter(out, fs=settings.fs, vocabulary=vocabulary, params=settings.params())
    records = None
    resumed, reprepared, dropped = 0, Counter(), 0
    try:
        # The dataset is what the sources hold now: a record whose source is gone leaves it.
        current = {c.path for c in candidates}
        gone = [key for key in [*writer.prepared, *writer.skipped] if key not in current]
        dropped = sum(key in writer.prepared for key in gone)
        for key in gone:
            writer.drop(key)
        tasks = [(c, writer.stamps.get(c.path) if c.path in writer.prepared else None) for c in candidates]
        bar = tqdm(total=len(tasks), desc="prepare", unit="rec", file=sys.stderr, disable=not progress, mininterval=1.0)
        with bar:
            for key, record, reason, stamp in _results(tasks, workers, settings, labels):
                bar.update()
                if reason == UNCHANGED:
                    resumed += 1
                    continue
                if key in writer.prepared:
                    reprepared[stamp_change(writer.stamps.get(key), stamp)] += 1
                if record is None:
                    writer.skip(key, reason)
                else:
                    writer.add(key, record, stamp)
        if writer.prepared:
            records = _unify_near_duplicates(writer, writer.index(), settings.fs, progress)
            extra = {"sources": [str(s.absolute()) for s in sources],
                     "label_notes": label_notes[:MAX_NOTES], "label_notes_total": len(label_notes)}
            records = writer.finish(records, extra=extra)
    finally:
        writer.close()
    reasons = Counter(reason for reason in writer.skipped.values())
    summary = PrepareSummary(
        out=out,
        found=len(writer.prepared) + len(writer.skipped),
        prepared=0 if records is None else len(records),
        skipped=len(writer.skipped),
        resumed=resumed,
        domains={} if records is None else records["domain"].value_counts().sort_index().to_dict(),
        reasons=reasons,
        fingerprint="" if records is None else writer.manifest["fingerprint"],
        label_notes=len(label_notes),
        reprepared=reprepared,
        dropped=dropped,
        quality={} if records is None else writer.manifest["quality"],
    )
    if records is None:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for name in (MANIFEST_FILE, RECORDS_FILE):  # an earlier empty dataset of an older version
                (out / name).unlink(missing_ok=True)
        raise NothingPreparedError(_nothing_prepared(sources, summary.found, reasons), summary)
    return summary
