"""MATLAB `.mat` files read with their declared sizes checked first (levels 4 and 5).

`scipy.io.loadmat` allocates what a file declares and decompresses what it holds: a 0.9 MB
zlib-compressed matrix of 12 x 4e7 zeros becomes 4 GB, and `scipy.io.whosmat` decompresses
too (311 MB peak on a 187 KB file). So the variable directory is read here from the
element headers alone: a level-5 compressed element is inflated only for its first bytes
(a bounded `zlib.decompressobj().decompress(data, n)`) to learn its class, flags and
dimensions. A variable that passes is then cut out of the file (inflated with a bound when
compressed) and handed to scipy as a small in-memory file, so scipy never reads more than
the bound, whatever later tags claim.

Formats: level 4 (the challenge's own files, `savemat(format="4")`) and level 5; level 7.3
(HDF5) is refused with its reason.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np
import scipy.io

from heartbeatai.data.raw_record import RecordError
from heartbeatai.data.source_files import file_size

# level-5 data types and array classes (MATLAB "MAT-File Format", tables 1-2 and 1-3)
_MI_INT8, _MI_INT32, _MI_UINT32, _MI_MATRIX, _MI_COMPRESSED = 1, 5, 6, 14, 15
_CLASSES = {
    1: ("cell", None), 2: ("struct", None), 3: ("object", None), 4: ("char", None), 5: ("sparse", None),
    6: ("double", 8), 7: ("single", 4), 8: ("int8", 1), 9: ("uint8", 1), 10: ("int16", 2), 11: ("uint16", 2),
    12: ("int32", 4), 13: ("uint32", 4), 14: ("int64", 8), 15: ("uint64", 8), 16: ("function", None),
    17: ("opaque", None),
}
_COMPLEX_FLAG, _LOGICAL_FLAG = 0x08, 0x02
# level 4: precision digit P of the type code MOPT, and its item size
_V4_PRECISION = {0: ("double", 8), 1: ("single", 4), 2: ("int32", 4), 3: ("int16", 2), 4: ("uint16", 2), 5: ("uint8", 1)}
_V4_TYPES = {0: "numeric", 1: "char", 2: "sparse"}
_PEEK_COMPRESSED = 64 << 10  # compressed bytes read to learn an element's header
_PEEK_HEADER = 4096  # inflated bytes enough for flags, dims and any sane name
NUMERIC_CLASSES = frozenset(name for name, size in _CLASSES.values() if size)


@dataclass(frozen=True)
class MatVariable:
    """One top-level variable as its header declares it; nothing of its data read."""

    name: str
    mclass: str  # "double", "int16", ..., "struct", "cell", "char", "sparse"
    dims: tuple[int, ...]
    itemsize: int | None  # bytes per value of a numeric class
    complex: bool
    logical: bool
    offset: int  # where the element (level 5: its tag; level 4: its header) starts
    length: int  # bytes of the element in the file (compressed bytes if compressed)
    compressed: bool
    inner_length: int  # level 5: bytes of the (inflated) miMATRIX element, tag included
    data_offset: int = -1  # level 4: where the values start in the file
    endian: str = "<"  # level 4: each variable's own byte order

    @property
    def values(self) -> int:
        return int(np.prod(self.dims, dtype=np.float64)) if self.dims else 0

    @property
    def declared_bytes(self) -> int:
        return self.values * (self.itemsize or 1) * (2 if self.complex else 1)

    def describe(self) -> str:
        kind = "boolean" if self.logical else ("complex " if self.complex else "") + self.mclass
        return f"{kind} {'x'.join(str(d) for d in self.dims)}"


class _Header:
    def __init__(self, version: int, endian: str, header: bytes):
        self.version, self.endian, self.header = version, endian, header


def _file_header(handle: BinaryIO, size: int, label: str) -> _Header:
    handle.seek(0)
    head = handle.read(128)
    if len(head) == 128 and head[124:126] in (b"\x00\x01", b"\x01\x00", b"\x00\x02", b"\x02\x00") \
            and head[126:128] in (b"IM", b"MI"):
        endian = "<" if head[126:128] == b"IM" else ">"
        version = struct.unpack(endian + "H", head[124:126])[0]
        if version == 0x0200 or head.startswith(b"MATLAB 7.3"):
            raise RecordError(f"{label} is a MATLAB 7.3 (HDF5) file, which is not supported")
        return _Header(5, endian, head)
    if head.startswith(b"\x89HDF"):
        raise RecordError(f"{label} is an HDF5 file, not a MATLAB level 4/5 file")
    if size < 20:
        raise RecordError(f"{label} is too short to be a .mat file ({size} bytes)")
    return _Header(4, "<", b"")


def variables(handle: BinaryIO, label: str, wanted: set[str] | None = None) -> tuple[dict[str, MatVariable], _Header]:
    """The file's top-level variables (stops early once every `wanted` name is found)."""
    size = file_size(handle)
    header = _file_header(handle, size, label)
    found: dict[str, MatVariable] = {}
    reader = _v5_variables if header.version == 5 else _v4_variables
    for var in reader(handle, size, header, label):
        found.setdefault(var.name, var)
        # Level 4 is walked to its end: its headers carry no lengths of their own, so a
        # class or shape that disagrees with the data shows only as bytes left over or
        # cut short. Level-5 elements state their lengths, checked when one is loaded.
        if wanted and wanted.issubset(found) and header.version == 5:
            break
    return found, header


MAX_V4_VARIABLES = 1024  # the challenge's files hold one; a walk over millions is a hostile file


def _v4_variables(handle: BinaryIO, size: int, header: _Header, label: str):
    position = 0
    count = 0
    while position < size:
        count += 1
        if count > MAX_V4_VARIABLES:
            raise RecordError(f"{label} holds more than {MAX_V4_VARIABLES} level 4 variables")
        if position + 20 > size:
            raise RecordError(f"{label}: {size - position} bytes after the last variable: the declared class or "
                              "shape does not match the data")
        handle.seek(position)
        raw = handle.read(20)
        endian = None
        for candidate in ("<", ">"):
            mopt, mrows, ncols, imagf, namlen = struct.unpack(candidate + "5i", raw)
            if 0 <= mopt < 5000 and mopt // 1000 in (0, 1) and (mopt // 100) % 10 == 0:
                endian = candidate
                break
        precision, kind = (mopt // 10) % 10, mopt % 10
        if endian is None or precision not in _V4_PRECISION or kind not in _V4_TYPES or mrows < 0 or ncols < 0 \
                or not 0 < namlen <= 4096:
            if position:
                raise RecordError(f"{label}: {size - position} bytes after the last variable do not form a "
                                  "level 4 variable: the declared class or shape does not match the data")
            raise RecordError(f"{label} is not a MATLAB file (bad level 4 header)")
        name = handle.read(namlen).split(b"\x00", 1)[0].decode("latin-1")
        mclass, itemsize = _V4_PRECISION[precision]
        length = 20 + namlen + mrows * ncols * itemsize * (2 if imagf else 1)
        if kind != 0:
            mclass, itemsize = _V4_TYPES[kind], None
        if position + length > size:
            raise RecordError(f"truncated {label}: variable {name!r} declares {length} bytes, "
                              f"{size - position} remain")
        yield MatVariable(name, mclass, (mrows, ncols), itemsize, bool(imagf), False, position, length, False, length,
                          position + 20 + namlen, endian)
        position += length


def _tag(data: bytes, at: int, endian: str) -> tuple[int, int, int]:
    """(type, byte count, offset of the data) of the tag at `at` (small elements included)."""
    if at + 8 > len(data):
        raise RecordError("element header cut short")
    first, second = struct.unpack_from(endian + "II", data, at)
    if first >> 16:  # small data element: type and count share 4 bytes, data in the next 4
        return first & 0xFFFF, first >> 16, at + 4
    return first, second, at + 8


def _padded(n: int) -> int:
    return (n + 7) & ~7


def _matrix_header(data: bytes, endian: str, label: str, at: int = 0
                   ) -> tuple[str, str, tuple[int, ...], int | None, bool, bool, int, int]:
    """Name, class, dims, itemsize, complex, logical, total length and body offset of the
    miMATRIX element at `at` (the body is what follows the name)."""
    try:
        mtype, nbytes, at = _tag(data, at, endian)
        if mtype != _MI_MATRIX:
            raise RecordError(f"{label}: unexpected element type {mtype}")
        if nbytes == 0:
            return "", "empty", (), None, False, False, 8, at
        ftype, fbytes, fat = _tag(data, at, endian)
        if ftype != _MI_UINT32 or fbytes != 8:
            raise RecordError(f"{label}: bad array flags")
        flags = struct.unpack_from(endian + "I", data, fat)[0]
        at = fat + 8
        dtype_, dbytes, dat = _tag(data, at, endian)
        if dtype_ != _MI_INT32 or dbytes % 4 or not 4 <= dbytes <= 128:
            raise RecordError(f"{label}: bad dimensions")
        if dat + dbytes > len(data):
            raise RecordError("element header cut short")
        dims = struct.unpack_from(f"{endian}{dbytes // 4}i", data, dat)
        at = dat + (_padded(dbytes) if dat == at + 8 else 4)
        ntype, nlen, nat = _tag(data, at, endian)
        if ntype != _MI_INT8 or nlen > 4096 or nat + nlen > len(data):
            raise RecordError(f"{label}: bad variable name")
        name = data[nat:nat + nlen].decode("latin-1")
        body = nat + (_padded(nlen) if nat == at + 8 else 4)
    except struct.error:
        raise RecordError(f"{label}: element header cut short") from None
    if any(d < 0 for d in dims):
        raise RecordError(f"{label}: negative dimension in {name!r}")
    mclass, itemsize = _CLASSES.get(flags & 0xFF, (f"class {flags & 0xFF}", None))
    flag_bits = (flags >> 8) & 0xFF
    return (name, mclass, tuple(dims), itemsize, bool(flag_bits & _COMPLEX_FLAG), bool(flag_bits & _LOGICAL_FLAG),
            8 + nbytes, body)


def _check_tree(data: bytes, at: int, endian: str, label: str, depth: int = 0,
                fields: dict[str, MatVariable] | None = None, field_name: str = "") -> int:
    """Check that every nested array (struct fields, cells) fits the bytes that hold it:
    scipy allocates what dimensions declare (an object array per cell or struct) before
    reading, so a cell declaring 1e9 elements in 100 bytes is refused here; and that every
    numeric array's data hold exactly its declared values (`_check_numeric_data`). Fills
    `fields` with the declarations of a struct's fields (of its first element), as the file
    states them: scipy returns a logical array as uint8, the flag is only here. Returns the end."""
    if depth > 16:
        raise RecordError(f"{label}: arrays nested deeper than 16 levels")
    name, mclass, dims, itemsize, _, _, length, body = _matrix_header(data, endian, label, at)
    name = name or field_name  # a struct's fields are named in the struct, not in themselves
    what = repr(name) if name else "an array"
    end = at + length
    if end > len(data):
        raise RecordError(f"{label}: {what} declares more bytes than the file holds")
    if mclass == "empty":
        return end
    values = int(np.prod(dims, dtype=np.float64))
    children = 0
    try:
        if mclass in ("struct", "object"):
            if mclass == "object":
                _, cbytes, cat = _tag(data, body, endian)
                body = cat + (_padded(cbytes) if cat == body + 8 else 4)
            _, _, lat = _tag(data, body, endian)
            field_length = struct.unpack_from(endian + "i", data, lat)[0]
            _, fbytes, fat = _tag(data, lat + 4, endian)
            n_fields = fbytes // field_length if field_length > 0 else 0
            names = [data[fat + i * field_length: fat + (i + 1) * field_length].split(b"\x00", 1)[0].decode("latin-1")
                     for i in range(n_fields)]
            body = fat + _padded(fbytes)
            children = values * n_fields
        elif mclass == "cell":
            children = values
    except struct.error:
        raise RecordError(f"{label}: element header cut short") from None
    if children:
        if children * 8 > end - body:
            raise RecordError(f"{label}: {what} declares {children} elements in {end - body} bytes")
        for child in range(children):
            field = names[child % len(names)] if mclass in ("struct", "object") else ""
            if fields is not None and mclass == "struct" and child < len(names):
                _, fclass, fdims, fsize, fcomplex, flogical, flength, _ = _matrix_header(data, endian, label, body)
                fields.setdefault(field, MatVariable(field, fclass, fdims, fsize, fcomplex, flogical,
                                                     body, flength, False, flength))
            body = _check_tree(data, body, endian, label, depth + 1, field_name=field)
    elif itemsize is not None and mclass != "sparse":
        _check_numeric_data(data, body, end, endian, label, name, mclass, dims, values)
    elif values > end - body:  # every value takes at least one byte, however it is stored
        raise RecordError(f"{label}: {what} declares {values} values in {end - body} bytes")
    return at + _padded(length)


# level-5 storage types of numeric data and their sizes (a class may be stored in a
# smaller type: MATLAB writes a double array of small integers as miUINT8)
_STORAGE_BYTES = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8}


def _check_numeric_data(data: bytes, body: int, end: int, endian: str, label: str, name: str, mclass: str,
                        dims: tuple[int, ...], values: int) -> None:
    """A numeric array's (real part) data element holds exactly its declared values."""
    what = repr(name) if name else "an array"
    try:
        stype, nbytes, start = _tag(data, body, endian)
    except (RecordError, struct.error):
        raise RecordError(f"{label}: {what} has no data element") from None
    size = _STORAGE_BYTES.get(stype)
    shape = "x".join(str(d) for d in dims)
    if size is None:
        raise RecordError(f"{label}: {what} ({mclass} {shape}) stores its data as type {stype}, "
                          "not numbers")
    if nbytes != values * size or start + nbytes > end:
        raise RecordError(f"{label}: {what} declares {mclass} {shape} ({values * size} bytes of "
                          f"{size}-byte values), its data hold {nbytes}: the declared class or shape does not match "
                          "the data")


# numpy type of each level-5 storage type and of each level-4 class
_STORAGE_DTYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
_V4_DTYPES = {"double": "f8", "single": "f4", "int32": "i4", "int16": "i2", "uint16": "u2", "uint8": "u1"}
_INFLATE_INPUT = 64 << 10  # compressed bytes fed to zlib at a time


class _Stream:
    """Sequential reads of exactly what is asked (fewer only at the end), from a file
    window or from a compressed element inflated as it is read: never more than one read's
    worth in memory, so a matrix is converted chunk by chunk."""

    def __init__(self, handle: BinaryIO, start: int, length: int, compressed: bool, label: str):
        self._handle, self._left, self._label = handle, length, label
        self._inflater = zlib.decompressobj() if compressed else None
        self._input = b""
        self._pending = b""
        handle.seek(start)

    def _raw(self, n: int) -> bytes:
        data = self._handle.read(min(n, self._left))
        self._left -= len(data)
        return data

    def _inflate(self, n: int) -> bytes:
        parts, have = [], 0
        while have < n:
            if not self._input:
                self._input = self._raw(_INFLATE_INPUT)
            try:
                out = self._inflater.decompress(self._input, n - have)
            except zlib.error as err:
                raise RecordError(f"{self._label}: damaged compressed data ({err})") from None
            progressed = len(self._inflater.unconsumed_tail) < len(self._input)
            self._input = self._inflater.unconsumed_tail
            if out:
                parts.append(out)
                have += len(out)
            elif not progressed or (not self._input and not self._left):
                break  # the stream ends here
        return b"".join(parts)

    def read(self, n: int) -> bytes:
        head, self._pending = self._pending[:n], self._pending[n:]
        if len(head) == n:
            return head
        rest = self._inflate(n - len(head)) if self._inflater is not None else self._raw(n - len(head))
        return head + rest

    def unread(self, data: bytes) -> None:
        self._pending = data + self._pending


def numeric_chunks(handle: BinaryIO, header: _Header, var: MatVariable, max_bytes: int, label: str,
                   chunk_values: int) -> Iterator[np.ndarray]:
    """A real numeric variable's values in file order (column-major), as flat arrays of at
    most `chunk_values` values in the type the file stores them.

    Converting chunk by chunk keeps a record's memory near its converted size: scipy would
    read the element, copy it into a buffer and decode a third copy (with the float32
    signal, 5x the record). The data element must hold exactly the declared values (a
    level-5 element states its byte count; a level-4 file was tiled when listed), and a
    compressed element is inflated only as far as those values go.
    """
    if var.complex or var.mclass not in NUMERIC_CLASSES or var.logical:
        raise RecordError(f"{label}: {var.name!r} is {var.describe()}, not a real numeric matrix")
    values = var.values
    if header.version == 4:
        dtype = np.dtype(var.endian + _V4_DTYPES[var.mclass])
        stream = _Stream(handle, var.data_offset, values * dtype.itemsize, False, label)
    else:
        stream = _Stream(handle, var.offset + 8 if var.compressed else var.offset,
                         var.length - 8 if var.compressed else var.length, var.compressed, label)
        head = stream.read(min(var.inner_length, _PEEK_HEADER))
        name, mclass, dims, _, _, _, _, body = _matrix_header(head, header.endian, label)
        if (name, mclass, tuple(dims)) != (var.name, var.mclass, tuple(var.dims)):
            raise RecordError(f"{label}: {var.name!r} changed while read")
        _check_numeric_data(head, body, var.inner_length, header.endian, label, name, mclass, dims, values)
        stype, nbytes, start = _tag(head, body, header.endian)
        if nbytes > max_bytes:
            raise RecordError(f"{label}: {var.name!r} stores {nbytes} bytes, beyond the {max_bytes / 1e6:.1f} MB limit")
        dtype = np.dtype(header.endian + _STORAGE_DTYPES[stype])
        if start + nbytes <= len(head):  # small data, within what was read already
            stream.unread(head[start:start + nbytes])
        elif start > len(head):
            raise RecordError(f"{label}: element header cut short")
        else:
            stream.unread(head[start:])
    left = values
    while left:
        count = min(left, chunk_values)
        data = stream.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise RecordError(f"truncated {label}: {var.name!r} holds {values - left + len(data) // dtype.itemsize} "
                              f"of {values} values")
        left -= count
        yield np.frombuffer(data, dtype=dtype)


def _inflate_start(compressed: bytes, limit: int) -> bytes:
    try:
        return zlib.decompressobj().decompress(compressed, limit)
    except zlib.error as err:
        raise RecordError(f"damaged compressed data ({err})") from None


def _v5_variables(handle: BinaryIO, size: int, header: _Header, label: str):
    endian = header.endian
    position = 128
    while position + 8 <= size:
        handle.seek(position)
        tag = handle.read(8)
        mtype, nbytes = struct.unpack(endian + "II", tag)
        if mtype >> 16:
            raise RecordError(f"{label}: small element at top level")
        end = position + 8 + (nbytes if mtype == _MI_COMPRESSED else _padded(nbytes))
        if position + 8 + nbytes > size:
            raise RecordError(f"truncated {label}: an element declares {nbytes} bytes, {size - position - 8} remain")
        if mtype == _MI_COMPRESSED:
            start = _inflate_start(handle.read(min(nbytes, _PEEK_COMPRESSED)), _PEEK_HEADER)
            try:
                name, mclass, dims, itemsize, cplx, logical, inner, _ = _matrix_header(start, endian, label)
            except RecordError as err:
                raise RecordError(f"{label}: compressed element: {err}") from None
            yield MatVariable(name, mclass, dims, itemsize, cplx, logical, position, 8 + nbytes, True, inner)
        elif mtype == _MI_MATRIX:
            start = tag + handle.read(min(nbytes, _PEEK_HEADER))
            name, mclass, dims, itemsize, cplx, logical, inner, _ = _matrix_header(start, endian, label)
            yield MatVariable(name, mclass, dims, itemsize, cplx, logical, position, 8 + nbytes, False, inner)
        position = end


def load_variable(handle: BinaryIO, header: _Header, var: MatVariable, max_bytes: int, label: str,
                  check_fields: Callable[[dict[str, MatVariable]], None] | None = None) -> Any:
    """The variable's value, reading at most its element (inflated to at most `max_bytes`).
    `check_fields`: called with a level-5 struct's field declarations before its values are
    decoded (it raises RecordError to refuse them)."""
    if var.inner_length > max_bytes + 4096:
        raise RecordError(f"{label}: {var.name!r} declares {var.inner_length} bytes, "
                          f"beyond the {max_bytes / 1e6:.1f} MB limit")
    handle.seek(var.offset)
    element = handle.read(var.length)
    if len(element) != var.length:
        raise RecordError(f"truncated {label}")
    if var.compressed:
        inflater = zlib.decompressobj()
        try:
            element = inflater.decompress(element[8:], var.inner_length)
        except zlib.error as err:
            raise RecordError(f"{label}: damaged compressed data ({err})") from None
        if inflater.unconsumed_tail and inflater.decompress(inflater.unconsumed_tail, 1):
            raise RecordError(f"{label}: {var.name!r} inflates beyond the {var.inner_length} bytes it declares")
        if len(element) < var.inner_length:
            raise RecordError(f"truncated {label}: {var.name!r} inflates to {len(element)} of "
                              f"{var.inner_length} bytes")
    if header.version == 5:
        fields: dict[str, MatVariable] = {}
        _check_tree(element, 0, header.endian, label, fields=fields)
        if check_fields is not None:
            check_fields(fields)
    # The element is let go once copied behind the file header: scipy's own read of the
    # matrix is then the second copy alive, not the third (a CPSC2018 struct of 172 MB of
    # float64 peaked at 2.9x its size, now 2.x).
    buffer = io.BytesIO(header.header + element)
    del element
    try:
        content = scipy.io.loadmat(buffer, variable_names=[var.name], mat_dtype=False)
    except Exception as err:  # noqa: BLE001 - scipy raises ValueError, TypeError... on damaged data
        text = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise RecordError(f"unreadable {label}: {text}") from None
    if var.name not in content:
        raise RecordError(f"unreadable {label}: {var.name!r} could not be read")
    return content[var.name]
