"""Files of a source tree, opened as if hostile: regular files only, inside the tree, bounded.

A downloaded release is data we did not write. Before any byte is read, a file must be a
regular file (a FIFO would block the reader forever, /dev/zero or /dev/urandom would feed
it without end), and a record's files must resolve inside the source folder the record
was found in (a header naming `../../../OUTSIDE/secret.mat` or `/etc/...`, or a symbolic
link leading out, is not read). Text files (headers, label tables) are read up to a cap.
Every refusal is a RecordError whose message is the record's one-line skip reason.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from heartbeatai.data.raw_record import RecordError

MAX_HEADER_BYTES = 1 << 20  # a 12-lead header is ~1 kB; PTB's with 15 leads and comments ~3 kB
MAX_LABEL_FILE_BYTES = 64 << 20  # ptbxl_database.csv of 21,799 rows is ~7 MB
_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


def shown(name: str | os.PathLike, limit: int = 80) -> str:
    """A file name as a skip reason shows it: as is when printable, else its repr; shortened."""
    text = os.fspath(name)
    text = text if text.isprintable() and text.strip() == text and text else repr(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resolve_inside(path: str | os.PathLike, root: str | os.PathLike | None, what: str,
                   name: str | None = None) -> Path:
    """The real path of `path`, a regular file inside `root` (None: no tree to stay in).

    Containment is checked first, so nothing outside the tree is even stat'ed (a link to
    /dev/zero is refused as leading outside); then only stat is called: nothing is opened,
    so a FIFO or socket inside the tree is refused without blocking on it. `name`: how
    the reason shows the file (default: its base name).
    """
    name = shown(name if name is not None else Path(path).name)
    real = Path(os.path.realpath(path))
    if root is not None:
        tree = Path(os.path.realpath(root))
        if real != tree and tree not in real.parents:
            raise RecordError(f"{what} {name} resolves outside the source folder")
    try:
        info = os.stat(real)
    except FileNotFoundError:
        raise RecordError(f"missing {what} {name}") from None
    except OSError as err:
        raise RecordError(f"unreadable {what} {name}: {err.strerror or err}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise RecordError(f"{what} {name} is {kind}, not a regular file")
    return real


def resolve_named(folder: Path, name: str, root: str | os.PathLike | None, what: str) -> Path:
    """A file a header names (relative to the header's folder), resolved inside the tree."""
    if not name or "\x00" in name:
        raise RecordError(f"{what} name {shown(name)} in header is not a file name")
    if os.path.isabs(name):
        raise RecordError(f"{what} {shown(name)} is an absolute path: a header names files beside it")
    return resolve_inside(folder / name, root if root is not None else folder, what, name)


def open_regular(real: Path, what: str) -> BinaryIO:
    """Open a file `resolve_inside` accepted; non-blocking, so a file swapped for a FIFO
    between the check and the open cannot block, and checked again on the open handle."""
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise RecordError(f"unreadable {what} {shown(real.name)}: {err.strerror or err}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RecordError(f"{what} {shown(real.name)} is not a regular file")
    return os.fdopen(fd, "rb")


def read_bounded(path: str | os.PathLike, root: str | os.PathLike | None, what: str, max_bytes: int) -> bytes:
    """The whole of a small file (header, label table), refused beyond `max_bytes`."""
    real = resolve_inside(path, root, what)
    with open_regular(real, what) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise RecordError(f"{what} {shown(Path(path).name)} is {size} bytes, more than the {max_bytes} allowed")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while read
        raise RecordError(f"{what} {shown(Path(path).name)} is more than the {max_bytes} bytes allowed")
    return data


def file_size(handle: BinaryIO) -> int:
    return os.fstat(handle.fileno()).st_size
