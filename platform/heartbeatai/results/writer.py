"""Append validated rows to a study's results tables as Parquet parts.

Each write is one new part, written under a temporary dot-name, fsynced, and renamed into
place (the folder fsynced too, on a local file system): a reader never sees half a file, a
study in progress is readable at any moment, and a part whose write returned survives a
power loss, so the journal may mark its stage. A later part overrides rows of an earlier
one with the same identity (schema.Table), so rerunning a trial rewrites it logically
without touching what is already there. One writer per study at a time: the study holds
the lock (DESIGN.md, Results store).
"""

from __future__ import annotations

import json
import os
import posixpath
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from heartbeatai.results import schema
from heartbeatai.results.schema import Table

_clock_lock = threading.Lock()
_last_ns = 0


def _next_stamp() -> int:
    global _last_ns
    with _clock_lock:
        _last_ns = max(time.time_ns(), _last_ns + 1)
        return _last_ns


def _monotonic_part_name() -> str:
    """Part names sort in write order: the reader's "latest part wins" relies on it."""
    return f"{schema.PART_PREFIX}{_next_stamp():020d}-{uuid.uuid4().hex[:8]}{schema.PART_SUFFIX}"


def _merged_part_name(newest: str) -> str:
    """The name of a compaction of parts up to `newest`: it sorts right after `newest` (and after
    an earlier compaction of it), and before any part written later, whose stamp is larger."""
    stem = newest[: -len(schema.PART_SUFFIX)].split(_MERGED_MARK)[0]
    return f"{stem}{_MERGED_MARK}{_next_stamp():020d}{schema.PART_SUFFIX}"


# "~" sorts after "." (the suffix) and after every character of a stamp or its hex tag.
_MERGED_MARK = "~"


class ResultsWriter:
    """Writes the tables of one study under ``<study_dir>/results``.

    ``study_dir`` is ``<storage>/<study>`` (a local path or a pyarrow-filesystem URL);
    its last component is the study name. Rows are stamped with the name the folder's rows
    carry on disk (``stored_name``: the folder's name unless the folder was copied or
    renamed, schema.stored_study_name), whether they come without a ``study`` column or
    under the folder's name, as a reader shows them; rows naming any other study are refused.
    """

    def __init__(self, study_dir: str | os.PathLike):
        self._fs, study_path = schema.resolve_filesystem(study_dir)
        self.study = schema.check_study_name(posixpath.basename(study_path.replace(os.sep, "/")))
        self.results_path = f"{study_path}/{schema.RESULTS_DIR}"
        self._fs.create_dir(self.results_path, recursive=True)
        version_text = self._write_version_file()
        self.stored_name = schema.stored_study_name(
            version_text, self._small_text(f"{study_path}/{schema.STUDY_CONFIG}"), self.study)

    def write(self, table: str, rows: pd.DataFrame) -> str | None:
        """Append ``rows`` to ``table`` as one part; returns the part's path (None if no rows)."""
        declaration = schema.table(table)
        if rows.empty:
            return None
        arrow = self._validated(declaration, rows)
        return self._write_part(declaration.name, arrow)

    def replace(self, table: str, rows: pd.DataFrame, where: Mapping[str, Any]) -> str | None:
        """Drop the stored rows matching every ``where`` column == value, then append ``rows``.

        For reruns that may write fewer rows than before (a trial's epochs). Not atomic
        across parts: a reader in between may see neither the old nor the new rows.
        """
        declaration = schema.table(table)
        unknown = [c for c in where if c not in declaration.columns]
        if unknown:
            raise ValueError(f"{table}: cannot match on unknown column(s) {unknown}")
        if where.get("study") == self.study:  # the folder's name, as readers show it
            where = {**where, "study": self.stored_name}
        arrow = self._validated(declaration, rows) if not rows.empty else None
        table_path = f"{self.results_path}/{declaration.name}"
        for info in self._parts(table_path):
            stored = pq.read_table(info.path, filesystem=self._fs)
            matched = np.ones(stored.num_rows, dtype=bool)
            for column, value in where.items():
                if column not in stored.column_names:
                    matched[:] = False
                    break
                matched &= stored.column(column).to_pandas().eq(value).fillna(False).to_numpy(dtype=bool)
            if not matched.any():
                continue
            kept = stored.filter(pa.array(~matched))
            if kept.num_rows:
                self._atomic_write(kept, info.path)  # same name: the part keeps its place in order
            else:
                self._fs.delete_file(info.path)
        return self._write_part(declaration.name, arrow) if arrow is not None else None

    def compact(self, table: str) -> str | None:
        """Merge the table's readable parts into one, keeping only the rows a reader would see.

        A study that writes per trial and per epoch leaves thousands of small parts; call this
        from the process holding the study's lock (when a fold finishes, say). The merged part
        is written under a new name that sorts right after the newest part it read, before the
        merged ones are deleted: a reader in between sees both, and the merged rows win by the
        identity rule, so no reader ever sees fewer rows; anything written later sorts after it
        and still wins. Unreadable parts are left where they are, for the reader to keep reporting.
        """
        declaration = schema.table(table)
        readable, tables = [], []
        for info in self._parts(f"{self.results_path}/{declaration.name}"):
            try:
                tables.append(pq.read_table(info.path, filesystem=self._fs))
                readable.append(info)
            except (OSError, pa.ArrowException):
                continue
        if len(readable) < 2:
            return None
        merged = pa.concat_tables(tables, promote_options="permissive")
        identities = merged.select(list(declaration.identity)).to_pandas()
        merged = merged.filter(pa.array(~identities.duplicated(keep="last").to_numpy()))
        directory, newest = posixpath.split(readable[-1].path)
        path = f"{directory}/{_merged_part_name(newest)}"
        self._atomic_write(merged, path)
        for info in readable:
            self._fs.delete_file(info.path)
        return path

    # -- validation ---------------------------------------------------------------------

    def _validated(self, declaration: Table, rows: pd.DataFrame) -> pa.Table:
        name = declaration.name
        rows = rows.reset_index(drop=True)
        if "study" not in rows.columns:
            rows = rows.assign(study=self.stored_name)
        else:
            rows = rows.assign(study=rows["study"].replace({self.study: self.stored_name}))
        unknown = [c for c in rows.columns if c not in declaration.columns and not declaration.is_dynamic(c)]
        if unknown:
            raise ValueError(f"{name}: unknown column(s) {unknown}")
        missing = [c for c in declaration.required if c not in rows.columns]
        if missing:
            raise ValueError(f"{name}: missing required column(s) {missing}")

        arrays, fields = [], []
        for column, dtype in declaration.columns.items():
            values = rows[column] if column in rows.columns else pd.Series([None] * len(rows), dtype=object)
            try:
                arrays.append(pa.array(values, type=dtype, from_pandas=True))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
                raise ValueError(f"{name}.{column}: cannot store as {dtype}: {err}") from None
            fields.append(pa.field(column, dtype))
        for column in sorted(c for c in rows.columns if declaration.is_dynamic(c)):
            array = pa.array(rows[column], from_pandas=True)
            arrays.append(array)
            fields.append(pa.field(column, array.type))
        arrow = pa.Table.from_arrays(arrays, schema=pa.schema(fields))

        # The checks run on the Arrow columns (from_pandas: NaN and None are both null): a
        # study writes thousands of small parts, and pandas' per-column checks cost ~50 ms each.
        null = [c for c in declaration.required if arrow.column(c).null_count]
        if null:
            raise ValueError(f"{name}: null values in required column(s) {null}")
        other_studies = sorted(set(pc.unique(arrow.column("study")).to_pylist()) - {self.stored_name})
        if other_studies:
            raise ValueError(f"{name}: rows of study {other_studies} written into study {self.study!r}")
        for column, allowed in declaration.allowed.items():
            if column not in rows.columns:
                continue
            bad = sorted(set(pc.unique(arrow.column(column)).drop_null().to_pylist()) - set(allowed))
            if bad:
                raise ValueError(f"{name}.{column}: {bad} not in {list(allowed)}")
        identity = list(declaration.identity)
        if arrow.num_rows > 1 and arrow.select(identity).group_by(identity).aggregate([]).num_rows < arrow.num_rows:
            duplicated = rows.duplicated(identity, keep=False)
            first = rows.loc[duplicated, identity].iloc[0].to_dict()
            raise ValueError(f"{name}: several rows share the identity {first}")
        return arrow

    # -- files --------------------------------------------------------------------------

    def _write_version_file(self) -> str:
        """Check the stored schema version, or record it with the study's name; returns the file's text."""
        path = f"{self.results_path}/{schema.VERSION_FILE}"
        info = self._fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            with self._fs.open_input_stream(path) as handle:
                text = handle.read().decode()
            found = json.loads(text).get("schema_version")
            if found != schema.SCHEMA_VERSION:
                raise ValueError(
                    f"{self.results_path} holds results schema {found}; this version writes "
                    f"{schema.SCHEMA_VERSION}: use a new storage path"
                )
            return text
        # The name the rows will carry, whatever the folder is called later (schema.stored_study_name).
        text = json.dumps({"schema_version": schema.SCHEMA_VERSION, "tables": sorted(schema.TABLES),
                           "study": self.study})
        tmp = f"{self.results_path}/.{schema.VERSION_FILE}.{uuid.uuid4().hex}"
        with self._fs.open_output_stream(tmp) as handle:
            handle.write(text.encode())
        self._fs.move(tmp, path)
        return text

    def _small_text(self, path: str) -> str | None:
        """A small text file beside the results (the study's config), or None."""
        info = self._fs.get_file_info(path)
        if info.type != pafs.FileType.File or (info.size or 0) > 1 << 20:
            return None
        try:
            with self._fs.open_input_stream(path) as handle:
                return handle.read().decode("utf-8")
        except (OSError, UnicodeDecodeError, pa.ArrowException):
            return None

    def _parts(self, table_path: str) -> list[pafs.FileInfo]:
        if self._fs.get_file_info(table_path).type != pafs.FileType.Directory:
            return []
        infos = self._fs.get_file_info(pafs.FileSelector(table_path))
        return sorted((i for i in infos if schema.is_part_name(i.base_name)), key=lambda i: i.base_name)

    def _write_part(self, table: str, arrow: pa.Table) -> str:
        table_path = f"{self.results_path}/{table}"
        self._fs.create_dir(table_path, recursive=True)
        path = f"{table_path}/{_monotonic_part_name()}"
        self._atomic_write(arrow, path)
        return path

    def _atomic_write(self, arrow: pa.Table, path: str) -> None:
        directory, name = posixpath.split(path)
        tmp = f"{directory}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        pq.write_table(arrow, tmp, filesystem=self._fs, compression="zstd")
        local = isinstance(self._fs, pafs.LocalFileSystem)
        if local:  # an object store's put is durable once it returns
            _fsync(tmp)
        self._fs.move(tmp, path)
        if local:
            _fsync(directory)  # the rename itself


def _fsync(path: str) -> None:
    """Flush a file's (or a folder's entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
