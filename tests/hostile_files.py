"""Hostile inputs for prepare, built without ever holding what they claim in memory.

Each writer makes one file the way an attacker (or a corrupt download) would: a MATLAB
file whose compressed matrix inflates to hundreds of MB, a sparse file as long as a
header's claim, a header naming a file outside the source tree. Used by
test_prepare_hostile.py and test_prepare_memory.py.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from contextlib import contextmanager
from pathlib import Path

from quirky_records import LEADS

_MAT5_HEADER = b"MATLAB 5.0 MAT-file, hostile test".ljust(116, b" ") + b"\x00" * 8 + struct.pack("<H", 0x0100) + b"IM"


def _matrix_element(n_signals: int, samples: int, mclass: int = 10, storage: int = 3, itemsize: int = 2) -> bytes:
    """The miMATRIX header of `val` (int16 by default) and its data tag; the data follow."""
    data_bytes = n_signals * samples * itemsize
    body = (
        struct.pack("<II", 6, 8) + struct.pack("<II", mclass, 0)  # array flags: class, no flags
        + struct.pack("<II", 5, 8) + struct.pack("<ii", n_signals, samples)  # dimensions
        + struct.pack("<HH", 1, 3) + b"val\x00"  # name, small element
        + struct.pack("<II", storage, data_bytes)
    )
    padded = data_bytes + (-data_bytes % 8)
    return struct.pack("<II", 14, len(body) + padded) + body, padded


_CLASSES = {"int16": (10, 3, 2), "double": (6, 9, 8)}  # class, storage type, item size


def write_compressed_bomb(path: Path, n_signals: int, samples: int, dtype: str = "int16", chunk: int = 8 << 20) -> int:
    """A level-5 .mat whose one zlib-compressed `val` (zeros, int16 or double) inflates to
    n_signals x samples x itemsize bytes. A chunk of zeros is deflated once after a full flush
    and its bytes repeated (a full flush resets the compressor, so every chunk compresses
    alike): 960 MB of claim cost a tenth of a second to write. Returns the file's size."""
    head, padded = _matrix_element(n_signals, samples, *_CLASSES[dtype])
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = [deflate.compress(head) + deflate.flush(zlib.Z_FULL_FLUSH)]
    adler = zlib.adler32(head)
    zeros = bytes(chunk)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    whole, rest = divmod(padded, chunk)
    for _ in range(whole):
        body.append(block)
        adler = zlib.adler32(zeros, adler)
    body.append(deflate.compress(zeros[:rest]) + deflate.flush(zlib.Z_FINISH))
    adler = zlib.adler32(zeros[:rest], adler)
    stream = b"\x78\xda" + b"".join(body) + struct.pack(">I", adler)
    path.write_bytes(_MAT5_HEADER + struct.pack("<II", 15, len(stream)) + stream)
    return path.stat().st_size


def write_sparse_val(path: Path, n_signals: int, samples: int) -> int:
    """An uncompressed level-4 int16 `val` of the full size, as a sparse file (no disk used)."""
    header = struct.pack("<5i", 30, n_signals, samples, 0, 4) + b"val\x00"  # MOPT 0030: int16, numeric
    with open(path, "wb") as handle:
        handle.write(header)
        handle.truncate(len(header) + n_signals * samples * 2)
    return path.stat().st_size


def challenge_header(name: str, samples: int, *, fs: float = 500, data_file: str | None = None,
                     n_signals: int = 12) -> str:
    data_file = data_file or f"{name}.mat"
    lines = [f"{name} {n_signals} {fs:g} {samples}"]
    lines += [f"{data_file} 16+24 1000/mV 16 0 0 0 0 {LEADS[i % 12]}" for i in range(n_signals)]
    return "\n".join([*lines, "#Age: 50", "#Sex: Male", "#Dx: 426783006"]) + "\n"


def native_header(name: str, samples: int, *, fs: float = 500, data_file: str | None = None) -> str:
    data_file = data_file or f"{name}.dat"
    lines = [f"{name} 12 {fs:g} {samples}"]
    lines += [f"{data_file} 16 1000.0(0)/mV 16 0 0 0 0 {lead}" for lead in LEADS]
    return "\n".join([*lines, "# Reason for admission: Healthy control"]) + "\n"


# --- which files a piece of code opens -------------------------------------------------

_opened: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one records only inside `opened_files`


@contextmanager
def opened_files():
    """Every path opened (builtins.open, io.open, os.open, numpy, scipy) inside the block."""
    global _opened
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None
