"""The prepared dataset on disk (DESIGN.md, Prepared dataset): its layout and its reader.

Layout of a prepared directory::

    manifest.json        schema_version, classes, fs, preprocessing, counts, skipped,
                         quality (records per plausibility verdict), duplicate groups,
                         fingerprint, shard table, label_notes (label rows skipped or
                         repeated that named no skipped record)
    records.parquet      one row per record (index 0..N-1, sorted by domain, record_id);
                         `quality` (ok | flat_leads | implausible_amplitude, plausibility.py)
                         is absent from datasets prepared before it, which still read
    signals/shard-NNNNN.f16
                         little-endian float16, time-major (samples, 12), records
                         back to back; a record is (shard, offset, length) in the index
    .prepare/            the writer's journal (resume, with each record's source stamp:
                         source_stamp.py) and parameters

Shards are raw arrays rather than .npy so the writer can append to them and a crash
loses at most the record being written; the manifest carries their shapes. Training
reads windows through a memory map, so many records share one open file and the page
cache, never one file per record. The writer is prepared_writer.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from heartbeatai.ecg import N_LEADS

SCHEMA_VERSION = 1
SIGNAL_DTYPE = np.dtype("<f2")
MANIFEST_FILE = "manifest.json"
RECORDS_FILE = "records.parquet"
SIGNALS_DIR = "signals"
# Age enters the classifier standardised, in about the units its signal features have: at
# age/100 (an earlier encoding) its weight, moved by Adam at most lr per step, could not reach
# the logits (docs/synthetic.md, "Demographic shortcut"). Checkpoints record the encoding, and
# one trained on another is refused (training/predict.py).
AGE_CENTRE, AGE_SCALE = 60.0, 20.0
DEMOGRAPHICS_ENCODING = "age (years - 60) / 20, sex, age known"


class NotPreparedError(ValueError):
    """The path is not a (finished) prepared dataset."""


def shard_name(shard: int) -> str:
    return f"{SIGNALS_DIR}/shard-{shard:05d}.f16"


class PreparedDataset:
    """Read side of a prepared directory: index as a DataFrame, signals by memory map.

    Picklable: the memory maps are reopened lazily in each process (Ray workers,
    DataLoader workers), never sent over the wire.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        manifest_path = self.path / MANIFEST_FILE
        if not manifest_path.is_file() or not (self.path / RECORDS_FILE).is_file():
            raise NotPreparedError(
                f"{self.path} is not a prepared dataset (no {MANIFEST_FILE} and {RECORDS_FILE}); "
                "run `heartbeatai prepare` first"
            )
        try:
            self.manifest: dict = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise NotPreparedError(f"{manifest_path}: unreadable manifest ({err})") from err
        version = self.manifest.get("schema_version")
        if version != SCHEMA_VERSION:
            raise NotPreparedError(
                f"{self.path}: prepared with schema_version {version}, this version reads {SCHEMA_VERSION}; "
                "prepare it again"
            )
        self.fs: int = int(self.manifest["fs"])
        self.fingerprint: str = self.manifest["fingerprint"]
        self.classes: list[str] = list(self.manifest["classes"])
        self.records: pd.DataFrame = pd.read_parquet(self.path / RECORDS_FILE).reset_index(drop=True)
        if len(self.records) != self.manifest.get("prepared"):
            # records.parquet and manifest.json are renamed into place one after the other
            raise NotPreparedError(f"{self.path}: index and manifest disagree (interrupted while finishing); rerun prepare")
        self._shard_samples = {int(s["shard"]): int(s["samples"]) for s in self.manifest["shards"]}
        # Plain arrays: window() is called thousands of times a second, pandas lookups
        # would dominate it.
        self._shard = self.records["shard"].to_numpy(np.int64)
        self._offset = self.records["offset"].to_numpy(np.int64)
        self._length = self.records["length"].to_numpy(np.int64)
        self._row_of = {rid: i for i, rid in enumerate(self.records["record_id"])}
        self._maps: dict[int, np.memmap] = {}

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"PreparedDataset({str(self.path)!r}, records={len(self)}, fs={self.fs})"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    def _map(self, shard: int) -> np.memmap:
        mapped = self._maps.get(shard)
        if mapped is None:
            samples = self._shard_samples[shard]
            mapped = np.memmap(self.path / shard_name(shard), dtype=SIGNAL_DTYPE, mode="r", shape=(samples, N_LEADS))
            self._maps[shard] = mapped
        return mapped

    def index_of(self, record_ids: Iterable[str]) -> np.ndarray:
        """Row positions of record ids (KeyError naming the first unknown one)."""
        try:
            return np.fromiter((self._row_of[r] for r in record_ids), dtype=np.int64)
        except KeyError as err:
            raise KeyError(f"record {err.args[0]!r} is not in {self.path}") from None

    def length(self, row: int) -> int:
        """The record's length in samples."""
        return int(self._length[row])

    def signal(self, row: int) -> np.ndarray:
        """The whole record, float16 (samples, 12) in mV: a view of the shard, no copy."""
        offset = self._offset[row]
        return self._map(int(self._shard[row]))[offset : offset + self._length[row]]

    def window(self, row: int, start: int, length: int) -> np.ndarray:
        """float32 (12, length) from sample `start` (negative reads from 0), zero-padded
        past the record's end: a short record fills the front of the window."""
        out = np.zeros((N_LEADS, length), dtype=np.float32)
        n = int(self._length[row])
        start = max(0, int(start))
        stop = min(n, start + length)
        if stop > start:
            offset = int(self._offset[row])
            out[:, : stop - start] = self._map(int(self._shard[row]))[offset + start : offset + stop].T
        return out

    def labels(self, classes: Sequence[str]) -> np.ndarray:
        """bool (N, C) for the given class abbreviations, in that order."""
        missing = [c for c in classes if f"cls_{c}" not in self.records.columns]
        if missing:
            raise KeyError(f"classes {missing} were not prepared in {self.path}; prepared: {self.classes}")
        return self.records[[f"cls_{c}" for c in classes]].to_numpy(dtype=bool)

    def demographics(self) -> np.ndarray:
        """float32 (N, 3): DEMOGRAPHICS_ENCODING, age standardised (0 when unknown), sex (male 1,
        female 0, unknown 0.5), age known."""
        age = self.records["age"].to_numpy(dtype=np.float64, na_value=np.nan)
        known = np.isfinite(age)
        sex = self.records["sex"].map({"male": 1.0, "female": 0.0}).fillna(0.5).to_numpy(np.float64)
        return np.stack([np.where(known, (age - AGE_CENTRE) / AGE_SCALE, 0.0), sex, known.astype(np.float64)], axis=1).astype(np.float32)
