"""What a prepared record was made from: each of its files' size, mtime and content hash.

A rerun of prepare into the same folder keeps a record only if its stamp matches the one
the journal holds; otherwise the record is prepared again (PhysioNet republishes corrected
releases under the same names: PTB-XL 1.0.1 -> 1.0.3 relabelled records). A stamp holds:

- the header: size, mtime in ns, and a BLAKE2b hash of its bytes;
- every file the header names (`.mat`, `.dat`, PTB's `.xyz`), or the CPSC2018 `.mat` that
  is a record by itself: the same three. The hash
  covers the whole file up to HASH_LIMIT bytes, which is every byte a reader reads:
  no record may hold more (raw_record.MAX_RECORD_BYTES), so a larger file is refused or
  read only within its first HASH_LIMIT bytes. Beyond it only size and mtime stand guard;
- the record's row of a native label file (ptbxl_database.csv, REFERENCE.csv), since
  those labels live outside the record's own files.

Hashing costs one read of each file (about 1 GB/s per core), a few percent of preparing
it; a resume pays that read for every record, in the workers, to know nothing went stale.
A file that cannot be opened is stamped with the reason: the record is then prepared
again and skipped with that reason.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from heartbeatai.data.challenge_reader import decode_header, parse_header
from heartbeatai.data.raw_record import MAX_RECORD_BYTES, RecordError
from heartbeatai.data.source_files import MAX_HEADER_BYTES, open_regular, resolve_inside, resolve_named

HASH_LIMIT = MAX_RECORD_BYTES + (1 << 20)  # the largest matrix plus its container's headers
_CHUNK = 1 << 20


def file_stamp(real: Path, what: str, keep_text: bool = False) -> tuple[list, bytes | None]:
    """[size, mtime_ns, hash] of a file `resolve_inside` accepted, and with `keep_text` its
    bytes when it is small enough to be a header (None otherwise)."""
    with open_regular(real, what) as handle:
        info = os.fstat(handle.fileno())
        digest = hashlib.blake2b(digest_size=16)
        kept = [] if keep_text and info.st_size <= MAX_HEADER_BYTES else None
        left = HASH_LIMIT
        while left > 0:
            chunk = handle.read(min(_CHUNK, left))
            if not chunk:
                break
            digest.update(chunk)
            left -= len(chunk)
            if kept is not None:
                kept.append(chunk)
    return [info.st_size, info.st_mtime_ns, digest.hexdigest()], None if kept is None else b"".join(kept)


def _named_files(text: bytes) -> list[str]:
    """Files a WFDB header names, in order, each once, spelled as the readers open them."""
    header = parse_header(*decode_header(text))
    return list(dict.fromkeys(header.path_name(name) for name in header.file_names))


def _labels_digest(entry: Any) -> str | None:
    if entry is None:
        return None
    return hashlib.blake2b(repr(entry).encode(), digest_size=8).hexdigest()


def record_stamp(kind: str, path: str, root: str, label_entry: Any = None) -> dict:
    """The stamp of one record candidate (`kind` "hea" or "mat"). Never raises: what cannot
    be read is stamped with its reason, so it never matches a prepared record's stamp."""
    stamp: dict = {"labels": _labels_digest(label_entry)}
    root = root or str(Path(path).parent)
    if kind != "hea":  # a CPSC2018 .mat: the record is this one file
        try:
            stamp["files"] = {Path(path).name: file_stamp(resolve_inside(path, root, ".mat file"), ".mat file")[0]}
        except RecordError as err:
            stamp["files"] = str(err)
        return stamp
    try:
        stamp["header"], text = file_stamp(resolve_inside(path, root, "header"), "header", keep_text=True)
    except RecordError as err:
        stamp["header"] = str(err)
        return stamp
    files: dict[str, list | str] = {}
    try:
        names = _named_files(text) if text is not None else []
    except RecordError as err:
        stamp["files"] = str(err)
        return stamp
    for name in names:
        try:
            files[name] = file_stamp(resolve_named(Path(path).parent, name, root, "signal file"), "signal file")[0]
        except RecordError as err:
            files[name] = str(err)
    stamp["files"] = files
    return stamp


def stamp_change(old: dict | None, new: dict) -> str:
    """Why a prepared record must be prepared again: the parts of its stamp that differ."""
    if not old:
        return "prepared by an earlier version, which kept no content stamp"
    parts = []
    if old.get("header") != new.get("header"):
        parts.append("header")
    if old.get("files") != new.get("files"):
        parts.append("signal file")
    if old.get("labels") != new.get("labels"):
        parts.append("label row")
    return " and ".join(parts) + " changed" if parts else "unchanged"
