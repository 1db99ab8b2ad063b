"""Native label files (CPSC2018 REFERENCE.csv, PTB-XL ptbxl_database.csv), read row by row.

A label file is data from a download, like the records. It is read bounded (a regular file
of at most MAX_LABEL_FILE_BYTES), and each row stands alone: a bad row is skipped with
its line number, and the record it names is then skipped with that reason; every other
row still counts. Two rows naming one record with different labels are a conflict, never
resolved silently to the last: the record is skipped with both line numbers. A row that
repeats another exactly is kept once and noted.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from heartbeatai.data.raw_record import RecordError
from heartbeatai.data.source_files import MAX_LABEL_FILE_BYTES, read_bounded

MAX_NOTES = 200  # file-level notes kept in the manifest; the rest are counted


class LabelTable(dict):
    """Record name -> its labels (a dict), plus why other records' rows could not be used.

    `problems`: record name -> one-line reason naming the file and line(s);
    `notes`: file-level remarks (rows naming no record, exact repeats).
    """

    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file
        self.problems: dict[str, str] = {}
        self.notes: list[str] = []
        self.lines: dict[str, str] = {}  # record -> "file line N" of the row it came from
        self._conflicts: set[str] = set()

    def note(self, text: str) -> None:
        self.notes.append(text)

    def add(self, name: str, value: Any, where: str) -> None:
        if name in self._conflicts:
            self.problems[name] = self.problems[name].rstrip(")") + f", {where})"
            return
        if name in self:
            if self[name] == value:
                self.note(f"{where}: repeats {self.lines[name]} for {name} (same labels, kept once)")
                return
            first = self.lines.pop(name)
            del self[name]
            self._conflicts.add(name)
            self.problems[name] = f"conflicting label rows for {name} ({first}, {where})"
            return
        self[name] = value
        self.lines[name] = where
        self.problems.pop(name, None)  # a good row outranks a bad one

    def reject(self, name: str, where: str, reason: str) -> None:
        """A row for `name` that cannot be used."""
        if name in self or name in self._conflicts:
            self.note(f"{where}: {reason}; row skipped ({name} has another row)")
        else:
            self.problems.setdefault(name, f"{where}: {reason}")

    def merge(self, other: "LabelTable") -> None:
        """Add another file's rows (labels for the same record in two files must agree)."""
        for name, value in other.items():
            self.add(name, value, other.lines[name])
        for name, reason in other.problems.items():
            if name in other._conflicts:
                if name in self:
                    del self[name]
                    self.lines.pop(name, None)
                self._conflicts.add(name)
                self.problems[name] = reason
            elif name in self or name in self._conflicts:
                self.note(f"{reason}; row skipped ({name} has another row)")
            else:
                self.problems.setdefault(name, reason)
        self.notes.extend(other.notes)


def read_label_rows(path: str | os.PathLike) -> tuple[list[str], Iterator[tuple[int, dict[str, str] | None, str]]]:
    """The header and (line, row as column -> text, error) of each row of a CSV label file.

    A row the csv module cannot parse comes as (line, None, why); the next rows go on.
    """
    try:
        data = read_bounded(path, None, "label file", MAX_LABEL_FILE_BYTES)
    except RecordError as err:
        raise ValueError(f"{path}: {err}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    # The csv module refuses fields over 128 KiB (its default limit), and such a row would
    # come back without the record it names: that record was then skipped as "not in the
    # file". The whole file is bounded already, so fields may be as long as it: the row is
    # parsed, and the field's own check says what is wrong with it (a 200,000-character
    # scp_codes is refused as such, with its line). The limit is the csv module's global
    # state: raised while this file is parsed (eagerly), then put back.
    previous = csv.field_size_limit(max(MAX_LABEL_FILE_BYTES, csv.field_size_limit()))
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = [column.strip() for column in next(reader)]
        except StopIteration:
            header = []
        except csv.Error as err:
            raise ValueError(f"{path}: unreadable label file ({err})") from None
        rows: list[tuple[int, dict[str, str] | None, str]] = []
        while True:
            line = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as err:
                rows.append((line, None, f"unreadable CSV row ({str(err)[:80]})"))
                continue
            if any(cell.strip() for cell in cells):
                rows.append((line, dict(zip(header, cells)), ""))
    finally:
        csv.field_size_limit(previous)
    return header, iter(rows)


def where(path: str | os.PathLike, line: int) -> str:
    return f"{Path(path).name} line {line}"


def whole_number(text: str, low: float, high: float) -> int | None:
    """`text` as an integer in [low, high] (`15709.0` is 15709); None when empty; ValueError
    naming the value otherwise (inf, nan, 1e300, 2.5, words)."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text[:20]!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")) or not low <= value <= high or value != int(value):
        raise ValueError(f"{text[:20]!r} is not a whole number {low:g}-{high:g}")
    return int(value)
