"""Read a storage root's results tables, tolerating studies in progress and bad files.

``ResultsStore(root)`` lists the studies under a storage root (local path or a
pyarrow-filesystem URL) and reads their tables as pandas frames: a missing table reads as
an empty frame with the schema's columns, a corrupt part is skipped and reported (never
raised), and of rows sharing an identity the one from the latest part wins. Reads are
cached per part, keyed by its name, size and modification time, so a dashboard polling a
running study reads only the parts written since it last looked.

A study is named by its folder: every row reads with the folder's name in its ``study``
column, whatever name it was written under, so a copied or renamed study reads as itself.
A part holding rows of another study than the folder's own (schema.stored_study_name) is
foreign, mixed in from elsewhere: it is skipped and reported like a damaged part.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import yaml

from heartbeatai.arms import ALIASES
from heartbeatai.results import schema

log = logging.getLogger(__name__)

Signature = tuple[tuple[str, int, int], ...]
# The study's config beside its results (study/study_run.py writes it); read for its
# `analysis` section and its name alone, and only up to this size.
STUDY_CONFIG = schema.STUDY_CONFIG
# How a foreign part's reason starts (study analyse refuses a store holding one).
FOREIGN = "rows of another study"
_MAX_SMALL_FILE = 1 << 20
# Listings of a table retried when parts vanish under a read (a compaction in progress).
_RELISTS = 20


@dataclass(frozen=True)
class TableStatus:
    """What a table looks like on disk: absent, empty (study starting), readable, damaged."""

    table: str
    exists: bool
    parts: int
    rows: int
    corrupt: tuple[str, ...]  # "part-...parquet: reason", one per unreadable part

    @property
    def state(self) -> str:
        if not self.exists:
            return "missing"
        if self.corrupt:
            return "corrupt"
        return "ok" if self.rows else "empty"


@dataclass(frozen=True)
class _Cached:
    signature: Signature
    stored_name: str
    frame: pd.DataFrame
    status: TableStatus


class ResultsStore:
    def __init__(self, root: str):
        self.root = str(root)
        self._fs, self._root_path = schema.resolve_filesystem(root)
        self._cache: dict[tuple[str, str], _Cached] = {}
        self._progress: dict[tuple[str, Signature], pd.DataFrame] = {}
        # (study, table) -> {(part, mtime, size): its rows, or why it could not be read}
        self._part_cache: dict[tuple[str, str], dict[tuple[str, int, int], pa.Table | str]] = {}
        self._footers: dict[tuple[str, str, Signature], tuple[int, tuple[str, ...]]] = {}
        self._small_files: dict[tuple[str, int, int], str | None] = {}
        self._lock = threading.Lock()

    # -- discovery ----------------------------------------------------------------------

    def studies(self) -> list[str]:
        """Studies under the root: directories with a ``results/`` folder and a valid name."""
        if self._fs.get_file_info(self._root_path).type != pafs.FileType.Directory:
            return []
        names = []
        for info in self._fs.get_file_info(pafs.FileSelector(self._root_path)):
            if info.type != pafs.FileType.Directory:
                continue
            try:
                names.append(schema.check_study_name(info.base_name))
            except ValueError:
                continue
        # One batched call for every study's results/ folder (thousands of studies).
        infos = self._fs.get_file_info([self.results_path(name) for name in names])
        return sorted(name for name, info in zip(names, infos) if info.type == pafs.FileType.Directory)

    def has_study(self, study: str) -> bool:
        """Whether `study` (a valid name) is a study under the root, without listing the root."""
        return self._fs.get_file_info(self.results_path(study)).type == pafs.FileType.Directory

    def results_path(self, study: str) -> str:
        return f"{self._root_path}/{schema.check_study_name(study)}/{schema.RESULTS_DIR}"

    def status(self, study: str, table: str) -> TableStatus:
        return self._load(study, table).status

    def signature(self, study: str, tables: Iterable[str] | None = None) -> str:
        """A short hash that changes when any part of the given tables is added, rewritten or removed."""
        digest = hashlib.blake2b(digest_size=8)
        for name in sorted(tables or schema.TABLES):
            digest.update(repr((name, self._signature(study, name)[1])).encode())
        return digest.hexdigest()

    def schema_version(self, study: str) -> int | None:
        """The results schema the study's tables were written with (``schema_version.json``);
        None when the file is absent or unreadable. An older version's analysis tables have
        other columns and meanings: readers say so rather than compare them."""
        found = self._small_file(f"{self._study_path(study)}/{schema.RESULTS_DIR}/{schema.VERSION_FILE}")
        try:
            version = json.loads(found).get("schema_version") if found is not None else None
        except (ValueError, AttributeError):
            return None
        return version if isinstance(version, int) and not isinstance(version, bool) else None

    def stored_name(self, study: str) -> str:
        """The name the folder's rows carry on disk (the study's name when its results were first
        written): `study` itself unless the folder was copied or renamed."""
        return schema.stored_study_name(
            self._small_file(f"{self._study_path(study)}/{schema.RESULTS_DIR}/{schema.VERSION_FILE}"),
            self._small_file(f"{self._study_path(study)}/{STUDY_CONFIG}"), study)

    def analysis_settings(self, study: str) -> dict[str, Any]:
        """The ``analysis`` section of the study's ``study.yaml`` (rope, decision_probability,
        min_positives, ...), or {} when the study has no such file or section."""
        found = self._small_file(f"{self._study_path(study)}/{STUDY_CONFIG}")
        try:
            config = yaml.safe_load(found) if found is not None else None
        except yaml.YAMLError:
            return {}
        section = config.get("analysis") if isinstance(config, dict) else None
        return dict(section) if isinstance(section, dict) else {}

    def searched_parameters(self, study: str) -> list[str] | None:
        """The dotted parameters of `search.space` in the study's ``study.yaml``; None when the
        file or the section is absent (the default space was searched) or unreadable."""
        found = self._small_file(f"{self._study_path(study)}/{STUDY_CONFIG}")
        try:
            config = yaml.safe_load(found) if found is not None else None
        except yaml.YAMLError:
            return None
        search = config.get("search") if isinstance(config, dict) else None
        space = search.get("space") if isinstance(search, dict) else None
        return [str(k) for k in space] if isinstance(space, dict) else None

    def parts(self, study: str, table: str) -> Signature:
        """The table's finished parts as (name, mtime_ns, size), sorted; () when it has none yet."""
        return self._signature(study, table)[1]

    # -- files beside the tables (derived from them, such as the study summary) -----------------

    def read_results_file(self, study: str, name: str) -> str | None:
        """A small text file in the study's results folder; None when absent, unreadable or too large."""
        return self._small_file(f"{self.results_path(study)}/{name}")

    def write_results_file(self, study: str, name: str, text: str) -> None:
        """Write a file into the study's results folder under a temporary name, then rename it into
        place, so a reader never sees half of it. OSError where the store is read-only."""
        results = self.results_path(study)
        self._fs.create_dir(results, recursive=True)
        tmp = f"{results}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        with self._fs.open_output_stream(tmp) as handle:
            handle.write(text.encode("utf-8"))
        self._fs.move(tmp, f"{results}/{name}")

    # -- reading ------------------------------------------------------------------------

    def read(self, study: str, table: str, columns: Iterable[str] | None = None,
             filters: Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Rows of ``table`` for ``study``.

        ``filters`` maps a column to a value or to a list/tuple/set of accepted values.
        Unreadable parts are listed in ``frame.attrs["corrupt"]`` and in ``status()``.
        """
        declaration = schema.table(table)
        cached = self._load(study, table)
        frame = cached.frame
        for column, wanted in (filters or {}).items():
            self._check_column(declaration, column)
            if column not in frame.columns:
                frame = frame.iloc[0:0]
                continue
            accepted = list(wanted) if isinstance(wanted, (list, tuple, set, frozenset)) else [wanted]
            frame = frame[frame[column].isin(accepted)]
        if columns is not None:
            columns = list(columns)
            for column in columns:
                self._check_column(declaration, column)
            frame = frame.reindex(columns=columns)
        frame = frame.reset_index(drop=True)
        frame.attrs["corrupt"] = list(cached.status.corrupt)
        return frame

    def inventory(self, study: str) -> pd.DataFrame:
        """Per table: parts, rows as written (before later parts override), and state, from the
        Parquet footers alone, so a study's health is known without reading its tables."""
        rows = []
        for name in schema.TABLES:
            exists, signature = self._signature(study, name)
            key = (study, name, signature)
            with self._lock:
                known = self._footers.get(key)
            if known is None:
                known = self._read_footers(study, name, signature)
                with self._lock:
                    self._footers[key] = known
            written, corrupt = known
            state = "missing" if not exists else "corrupt" if corrupt else "ok" if written else "empty"
            rows.append(dict(table=name, parts=len(signature), rows_written=written, state=state,
                             problems="; ".join(corrupt)))
        return pd.DataFrame(rows)

    def progress(self, study: str) -> pd.DataFrame:
        """Per protocol and fold: how many trials are in each status, and how many in all."""
        _, signature = self._signature(study, "trials")
        with self._lock:
            known = self._progress.get((study, signature))
        if known is None:
            known = self._count_progress(study)
            with self._lock:
                self._progress[(study, signature)] = known
        return known.copy()

    def _count_progress(self, study: str) -> pd.DataFrame:
        trials = self.read(study, "trials", columns=["protocol", "fold_id", "status"])
        counts = pd.crosstab([trials["protocol"], trials["fold_id"]], trials["status"])
        counts = counts.reindex(columns=list(schema.TRIAL_STATUSES), fill_value=0)
        counts.columns.name = None
        counts["total"] = counts.sum(axis=1)
        return counts.reset_index().astype({s: "int64" for s in (*schema.TRIAL_STATUSES, "total")})

    # -- internals ----------------------------------------------------------------------

    @staticmethod
    def _check_column(declaration: schema.Table, column: str) -> None:
        if column not in declaration.columns and not declaration.is_dynamic(column):
            raise ValueError(f"{declaration.name} has no column {column!r}")

    def _study_path(self, study: str) -> str:
        schema.check_study_name(study)
        return f"{self._root_path}/{study}"

    def _table_path(self, study: str, table: str) -> str:
        return f"{self.results_path(study)}/{schema.table(table).name}"

    def _small_file(self, path: str) -> str | None:
        """A small text file's content, cached by its size and mtime; None when absent,
        unreadable or too large to be what it claims."""
        info = self._fs.get_file_info(path)
        if info.type != pafs.FileType.File or (info.size or 0) > _MAX_SMALL_FILE:
            return None
        key = (path, info.mtime_ns or 0, info.size or 0)
        with self._lock:
            if key in self._small_files:
                return self._small_files[key]
        try:
            with self._fs.open_input_stream(path) as handle:
                text = handle.read(_MAX_SMALL_FILE + 1).decode("utf-8")
        except (OSError, UnicodeDecodeError, pa.ArrowException):
            text = None
        with self._lock:
            self._small_files[key] = text
        return text

    def _signature(self, study: str, table: str) -> tuple[bool, Signature]:
        path = self._table_path(study, table)
        if self._fs.get_file_info(path).type != pafs.FileType.Directory:
            return False, ()
        infos = self._fs.get_file_info(pafs.FileSelector(path))
        return True, tuple(sorted(
            (i.base_name, i.mtime_ns or 0, i.size or 0) for i in infos if schema.is_part_name(i.base_name)
        ))

    def _load(self, study: str, table: str) -> _Cached:
        key = (study, table)
        stored_name = self.stored_name(study)
        for _ in range(_RELISTS):
            exists, signature = self._signature(study, table)
            with self._lock:
                cached = self._cache.get(key)
                if (cached is not None and cached.signature == signature and cached.status.exists == exists
                        and cached.stored_name == stored_name):
                    return cached
            loaded = self._read_parts(study, table, exists, signature, stored_name)
            if loaded is not None:
                break
            # A part listed was gone when read: a compaction replaced it by a merged part
            # written before the deletion, so listing again finds every row.
        else:
            raise OSError(f"results {study}/{table}: its parts kept changing while read")
        with self._lock:
            self._cache[key] = loaded
        return loaded

    def _read_footers(self, study: str, table: str, signature: Signature) -> tuple[int, tuple[str, ...]]:
        path = self._table_path(study, table)
        written, corrupt = 0, []
        for name, _, _ in signature:
            try:
                with self._fs.open_input_file(f"{path}/{name}") as handle:
                    written += pq.ParquetFile(handle).metadata.num_rows
            except FileNotFoundError:
                continue
            except (OSError, pa.ArrowException) as err:
                corrupt.append(f"{name}: {_first_line(err, path)}")
        return written, tuple(corrupt)

    def _read_parts(self, study: str, table: str, exists: bool, signature: Signature,
                    stored_name: str) -> _Cached | None:
        declaration = schema.table(table)
        path = self._table_path(study, table)
        parts, corrupt = [], []
        with self._lock:
            known = self._part_cache.get((study, table), {})
        current = {}
        for entry in signature:
            name = entry[0]
            part = known.get(entry)
            if part is None:  # only parts written (or rewritten) since the last read are read
                try:
                    part = pq.read_table(f"{path}/{name}", filesystem=self._fs)
                except FileNotFoundError:
                    return None  # replaced between listing and reading: list again
                except (OSError, pa.ArrowException) as err:
                    # A damaged part must not take the study's page down: report and go on.
                    part = _first_line(err, path)
                else:
                    part = _schema_problem(declaration, part) or part
                if isinstance(part, str):
                    log.warning("results %s/%s: skipping damaged part %s (%s)", study, table, name, part)
            current[entry] = part
            problem = part if isinstance(part, str) else _foreign(part, stored_name)
            if problem is not None:
                corrupt.append(f"{name}: {problem}")
            else:
                parts.append(part)
        with self._lock:
            self._part_cache[(study, table)] = current
        if parts:
            try:
                arrow = pa.concat_tables(parts, promote_options="permissive")
            except pa.ArrowException as err:
                corrupt.append(f"parts disagree on column types: {err}")
                arrow = None
        else:
            arrow = None
        if arrow is None:
            frame = declaration.empty_frame()
        else:
            frame = arrow.to_pandas()
            for column, dtype in declaration.columns.items():
                if column not in frame.columns:
                    frame[column] = pa.nulls(len(frame), type=dtype).to_pandas()
            if "arm" in frame.columns:  # stores written with older spellings read as today's
                frame["arm"] = frame["arm"].replace(ALIASES)
            frame["study"] = study  # named by its folder (the rows carry stored_name)
            frame = frame.drop_duplicates(list(declaration.identity), keep="last", ignore_index=True)
        status = TableStatus(table, exists, len(signature), len(frame), tuple(corrupt))
        return _Cached(signature, stored_name, frame, status)


def _schema_problem(declaration: schema.Table, part: pa.Table) -> str | None:
    """Why a readable part is not one the writer could have written, or None: a declared column
    of another type, a column the table does not have, a required column missing or null, a
    value outside a column's allowed set. Declared columns may be absent (older writers)."""
    for name in part.column_names:
        declared = declaration.columns.get(name)
        if declared is None:
            if not declaration.is_dynamic(name):
                return f"column {name!r} is not in the {declaration.name} table"
        elif part.schema.field(name).type != declared:
            return f"column {name!r} is {part.schema.field(name).type}, the schema says {declared}"
    for name in declaration.required:
        if name not in part.column_names:
            return f"required column {name!r} is missing"
        if part.column(name).null_count:
            return f"required column {name!r} has null values"
    for name, allowed in declaration.allowed.items():
        if name in part.column_names:
            found = set(part.column(name).drop_null().unique().to_pylist()) - set(allowed)
            if found:
                return f"column {name!r} holds {sorted(found)[:3]}, not one of {list(allowed)}"
    return None


def _foreign(part: pa.Table, stored_name: str) -> str | None:
    """Why a part's rows are not this study's own, or None: they name another study than the one
    the folder's rows carry. A copy keeps its rows' name, so only a mix of studies has one."""
    names = set(part.column("study").unique().to_pylist()) - {stored_name}
    if not names:
        return None
    shown = ", ".join(repr(n) for n in sorted(names, key=str)[:3])
    return f"{FOREIGN} ({shown}; this folder's rows are of study {stored_name!r})"


def _first_line(err: Exception, path: str) -> str:
    """The error's first line, without the storage path (the page shows it)."""
    return (str(err).splitlines() or [type(err).__name__])[0].replace(f"{path}/", "")
