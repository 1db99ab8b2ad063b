"""Writing a prepared dataset: appended shards, a journal for resume, the index and manifest.

A crash loses at most the record being written: shards are appended and fsynced before
the journal names a record done, and the index and manifest are written atomically at
`finish`. See prepared.py for the layout the reader expects.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from heartbeatai.data.prepared import (
    MANIFEST_FILE, RECORDS_FILE, SCHEMA_VERSION, SIGNAL_DTYPE, SIGNALS_DIR, shard_name,
)
from heartbeatai.ecg import LEADS, N_LEADS
from heartbeatai.labels import Vocabulary

WORK_DIR = ".prepare"
JOURNAL_FILE = "journal.jsonl"
PARAMS_FILE = "params.json"
LOCK_FILE = "lock"
# 256 MiB shards: few open files, yet a shard is small enough to copy or checksum.
DEFAULT_SHARD_BYTES = 256 * 2**20

# Index columns that describe where a record sits on disk or on the source machine:
# left out of the fingerprint so the same content prepared elsewhere, or in another
# worker order, fingerprints the same. `quality` is left out too: it is a verdict on the
# signal, which signal_digest already fingerprints, under thresholds the manifest states;
# so the fingerprint of a dataset prepared before the column existed still holds.
_UNFINGERPRINTED_COLUMNS = ("source_path", "shard", "offset", "quality")


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name and rename, so a reader sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)




@dataclass
class PreparedRecord:
    """One record after preprocessing, as a prepare worker hands it to the writer."""

    record_id: str
    domain: str
    source_path: str
    patient_id: str
    age: float | None
    sex: str | None  # "male" | "female" | None
    fs_original: float
    length_original: int
    label_codes_raw: list[str]
    label_codes: list[str]
    hash_exact: str
    hash_coarse: str
    header_gain: float | None  # the header's ADC gain per mV where the format has one
    gain_mismatch: bool  # header gain contradicts the data's known units
    nan_filled: bool  # NaNs were set to 0
    truncated: bool  # cut to the length cap
    leads_original: int
    signal: np.ndarray = field(repr=False)  # float16 (samples, 12), mV, target rate
    quality: str = "ok"  # plausibility.py: ok | flat_leads | implausible_amplitude (kept when asked)

    def meta(self) -> dict:
        meta = asdict(self)
        del meta["signal"]
        meta["signal_digest"] = hashlib.blake2b(np.ascontiguousarray(self.signal).tobytes(), digest_size=16).hexdigest()
        return meta


def _duplicate_groups(records: pd.DataFrame) -> list[dict]:
    """Connected components of records sharing hash_exact or hash_coarse (size >= 2)."""
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for column in ("hash_exact", "hash_coarse"):
        first: dict[str, int] = {}
        for i, value in enumerate(records[column]):
            j = first.setdefault(value, i)
            if j != i:
                parent[find(i)] = find(j)
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(records)):
        members[find(i)].append(i)
    groups = []
    for rows in members.values():
        if len(rows) < 2:
            continue
        part = records.iloc[rows]
        groups.append(
            {
                "record_ids": part["record_id"].tolist(),
                "domains": sorted(set(part["domain"])),
                "exact": bool(part["hash_exact"].nunique() == 1),
            }
        )
    return sorted(groups, key=lambda g: g["record_ids"])


def _fingerprint(records: pd.DataFrame, fs: int, classes: list[str]) -> str:
    content = records.drop(columns=[c for c in _UNFINGERPRINTED_COLUMNS if c in records]).sort_values("record_id")
    digest = hashlib.sha256(json.dumps({"fs": fs, "classes": classes}).encode())
    # Parquet bytes are not stable across pyarrow versions; JSON of the values is.
    digest.update(content.to_json(orient="values", double_precision=10).encode())
    return digest.hexdigest()[:32]


class PreparedWriter:
    """Write side: appends records to shards and a journal, then finishes the index.

    The journal makes prepare resumable: a record is done once its journal line is
    written, which happens after its samples are flushed. The line carries the stamp of
    the files it was read from, so a rerun redoes a changed source (`add` again: the
    later line wins), and `skip` or `drop` take a source's record out of the index. On
    reopening, shards are cut back to what the journal accounts for; samples of a
    superseded record stay in their shard, unindexed.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        fs: int,
        vocabulary: Vocabulary,
        params: dict,
        shard_bytes: int = DEFAULT_SHARD_BYTES,
    ) -> None:
        self.path = Path(path)
        self.fs = int(fs)
        self.vocabulary = vocabulary
        self.params = {"fs": self.fs, "classes": vocabulary.abbrs, **params}
        self.shard_samples = max(1, shard_bytes // (N_LEADS * SIGNAL_DTYPE.itemsize))
        (self.path / SIGNALS_DIR).mkdir(parents=True, exist_ok=True)
        work = self.path / WORK_DIR
        work.mkdir(exist_ok=True)
        self._lock = FileLock(work / LOCK_FILE)
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise ValueError(f"another prepare is writing {self.path}") from None
        params_path = work / PARAMS_FILE
        if params_path.exists():
            previous = json.loads(params_path.read_text(encoding="utf-8"))
            if previous != json.loads(json.dumps(self.params)):
                self._lock.release()
                changed = sorted(k for k in set(previous) | set(self.params) if previous.get(k) != self.params.get(k))
                raise ValueError(
                    f"{self.path} holds a prepare run with other parameters ({', '.join(changed)}); "
                    "use another --out or delete it"
                )
        else:
            write_atomic(params_path, json.dumps(self.params, indent=2).encode())
        self.prepared: dict[str, dict] = {}  # source key -> meta
        self.stamps: dict[str, dict] = {}  # source key -> what it was prepared from (source_stamp.py)
        self.skipped: dict[str, str] = {}  # source key -> reason
        self._load_journal()
        self._journal = open(work / JOURNAL_FILE, "a", encoding="utf-8")
        self._shard_file = open(self.path / shard_name(self._shard), "ab")

    def _load_journal(self) -> None:
        journal = self.path / WORK_DIR / JOURNAL_FILE
        extents: dict[int, int] = defaultdict(int)
        if journal.exists():
            text = journal.read_text(encoding="utf-8")
            good_bytes = 0
            for line in text.splitlines(keepends=True):
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    break  # a line cut by a crash: everything after it is lost work
                if not line.endswith("\n"):
                    break
                good_bytes += len(line.encode("utf-8"))
                key = entry["key"]
                if entry["kind"] == "prepared":
                    meta = entry["meta"]
                    self._forget(key)
                    self.prepared[key] = meta
                    if entry.get("stamp") is not None:
                        self.stamps[key] = entry["stamp"]
                    # every journaled record, live or superseded, bounds the samples kept:
                    # records were appended in journal order
                    extents[meta["shard"]] = max(extents[meta["shard"]], meta["offset"] + meta["length"])
                elif entry["kind"] == "skipped":
                    self._forget(key)
                    self.skipped[key] = entry["reason"]
                elif entry["kind"] == "dropped":
                    self._forget(key)
            with open(journal, "r+b") as handle:
                handle.truncate(good_bytes)
        for shard_file in (self.path / SIGNALS_DIR).glob("shard-*.f16"):
            shard = int(shard_file.stem.split("-")[1])
            with open(shard_file, "r+b") as handle:
                handle.truncate(extents.get(shard, 0) * N_LEADS * SIGNAL_DTYPE.itemsize)
        self._shard = max(extents, default=0)
        self._shard_fill = extents.get(self._shard, 0)

    def is_done(self, key: str, stamp: dict) -> bool:
        """True when this source was prepared by an earlier (or this) run from files whose
        stamp (size, mtime, content hash: source_stamp.py) is `stamp`. A changed source is
        prepared again; skipped sources are always tried again: the user may have fixed
        the file or given its labels."""
        return key in self.prepared and self.stamps.get(key) == stamp

    def _forget(self, key: str) -> None:
        self.prepared.pop(key, None)
        self.stamps.pop(key, None)
        self.skipped.pop(key, None)

    def add(self, key: str, record: PreparedRecord, stamp: dict | None = None) -> None:
        """Append a record; `stamp` is what it was read from. An earlier version of the
        same source stays in its shard as dead samples, no longer indexed."""
        signal = np.ascontiguousarray(record.signal, dtype=SIGNAL_DTYPE)
        if signal.ndim != 2 or signal.shape[1] != N_LEADS:
            raise ValueError(f"{record.record_id}: signal must be (samples, {N_LEADS}), got {signal.shape}")
        if self._shard_fill and self._shard_fill + len(signal) > self.shard_samples:
            self._sync(self._shard_file)
            self._shard_file.close()
            self._shard, self._shard_fill = self._shard + 1, 0
            self._shard_file = open(self.path / shard_name(self._shard), "ab")
        # Samples reach the OS before the journal line that makes them count; a killed
        # process therefore never leaves a journaled record without its samples.
        self._shard_file.write(signal.tobytes())
        self._shard_file.flush()
        meta = record.meta()
        meta.update(shard=self._shard, offset=self._shard_fill, length=len(signal))
        self._shard_fill += len(signal)
        self._forget(key)
        self.prepared[key] = meta
        if stamp is not None:
            self.stamps[key] = stamp
        self._write_journal({"kind": "prepared", "key": key, "meta": meta, "stamp": stamp})

    def skip(self, key: str, reason: str) -> None:
        """The source cannot be prepared (now): an earlier version of it leaves the index."""
        self._forget(key)
        self.skipped[key] = reason
        self._write_journal({"kind": "skipped", "key": key, "reason": reason})

    def drop(self, key: str) -> None:
        """The source is gone from the sources: its record leaves the index."""
        self._forget(key)
        self._write_journal({"kind": "dropped", "key": key})

    def _write_journal(self, entry: dict) -> None:
        self._journal.write(json.dumps(entry) + "\n")
        self._journal.flush()

    @staticmethod
    def _sync(handle) -> None:
        handle.flush()
        os.fsync(handle.fileno())

    def close(self) -> None:
        for handle in (self._shard_file, self._journal):
            if not handle.closed:
                self._sync(handle)
                handle.close()
        self._lock.release()

    def read_signal(self, shard: int, offset: int, length: int) -> np.ndarray:
        """A written record's samples (for work on the finished signals, e.g. sketches)."""
        self._shard_file.flush()
        itemsize = N_LEADS * SIGNAL_DTYPE.itemsize
        return np.fromfile(
            self.path / shard_name(shard), dtype=SIGNAL_DTYPE, count=length * N_LEADS, offset=offset * itemsize
        ).reshape(length, N_LEADS)

    def finish(self, records: pd.DataFrame | None = None, *, extra: dict | None = None) -> pd.DataFrame:
        """Write records.parquet and manifest.json; return the index.

        `records` is `index()` as the caller may have amended it (prepare unifies
        hash_coarse across near-duplicates); by default everything journaled.
        """
        self._sync(self._shard_file)
        self._sync(self._journal)
        records = self.index() if records is None else records
        shards = self._shard_table(records)
        classes = self.vocabulary.abbrs
        counts: dict[str, dict] = {}
        for domain, part in records.groupby("domain", sort=True):
            counts[str(domain)] = {
                "records": int(len(part)),
                "classes": {abbr: int(part[f"cls_{abbr}"].sum()) for abbr in classes},
            }
        skipped = [{"source": key, "reason": reason} for key, reason in sorted(self.skipped.items())]
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "classes": classes,
            "class_codes": self.vocabulary.codes,
            "fs": self.fs,
            "leads": list(LEADS),
            "units": "mV",
            "signal_dtype": SIGNAL_DTYPE.str,
            "preprocessing": {k: v for k, v in self.params.items() if k not in ("fs", "classes")},
            "found": len(self.prepared) + len(self.skipped),
            "prepared": int(len(records)),
            "counts": counts,
            "skipped": skipped,
            "quality": {str(k): int(v) for k, v in records["quality"].value_counts().sort_index().items()},
            "duplicate_groups": _duplicate_groups(records),
            "renamed_ids": _renamed(records),
            "shards": shards,
            "fingerprint": _fingerprint(records, self.fs, classes),
            **(extra or {}),
        }
        self.manifest = manifest
        table = records.to_parquet(index=False)
        write_atomic(self.path / RECORDS_FILE, table)
        write_atomic(self.path / MANIFEST_FILE, json.dumps(manifest, indent=1).encode())
        return records

    def index(self) -> pd.DataFrame:
        """The records table of everything prepared so far (sorted, unique ids, class columns)."""
        columns = list(PreparedRecord.__dataclass_fields__) + ["signal_digest", "shard", "offset", "length"]
        columns.remove("signal")
        metas = sorted(self.prepared.values(), key=lambda m: (m["domain"], m["record_id"], m["source_path"]))
        records = pd.DataFrame(metas, columns=columns)
        records["source_record_id"] = records["record_id"]
        records["record_id"] = _unique_ids(records["record_id"].tolist(), records["source_path"].tolist())
        records = records.sort_values(["domain", "record_id"], kind="stable").reset_index(drop=True)
        records["age"] = records["age"].astype("float64")
        for name in ("shard", "offset", "length", "length_original", "leads_original"):
            records[name] = records[name].astype("int64")
        for info in self.vocabulary.classes:
            members = set(info.codes)
            records[f"cls_{info.abbr}"] = records["label_codes"].map(lambda codes: bool(members.intersection(codes)))
        return records

    def _shard_table(self, records: pd.DataFrame) -> list[dict]:
        ends = (records["offset"] + records["length"]).groupby(records["shard"]).max()
        return [{"shard": int(s), "file": shard_name(int(s)), "samples": int(n)} for s, n in ends.items()]


def _renamed(records: pd.DataFrame) -> dict[str, str]:
    """record_id -> source path, for records whose name another source had taken."""
    renamed = records[records["record_id"] != records["source_record_id"]]
    return dict(zip(renamed["record_id"], renamed["source_path"]))


def _unique_ids(ids: list[str], sources: list[str]) -> list[str]:
    """The same name from two releases (A0001 in 2020 and 2021) stays two records: the
    first source path keeps the name, later ones get `~2`, `~3` (listed in the manifest)."""
    order = sorted(range(len(ids)), key=lambda i: (ids[i], sources[i]))
    seen: dict[str, int] = {}
    out = list(ids)
    for i in order:
        n = seen.get(ids[i], 0) + 1
        seen[ids[i]] = n
        if n > 1:
            out[i] = f"{ids[i]}~{n}"
    return out
