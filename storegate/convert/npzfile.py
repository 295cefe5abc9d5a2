"""Read NPZ files member by member, fast, in bounded memory, and without pickle.

An NPZ file is a zip archive of ``.npy`` members. ``numpy.load`` hands out an ``NpzFile``
whose every ``npz[key]`` looks the key up, reopens the member and parses its header: about
45 us per member, and kinoml's files have 200,000 of them. :class:`NpzReader` instead parses
the zip's central directory once (``zipfile``), then reads each member's local header and
``.npy`` header straight from the file (one small ``pread`` each), and reads the data of many
members at once with one ``pread`` over their byte span. Each member's CRC-32 is verified, so
a damaged file fails loudly instead of importing wrong numbers.

Object arrays are refused from their header (their payload is a pickle and is never read);
``allow_pickle`` is never enabled. Compressed members (``np.savez_compressed``) are read
through ``zipfile``'s decompressor.

Examples
--------
>>> import os, tempfile, numpy as np
>>> path = os.path.join(tempfile.mkdtemp(), "a.npz")
>>> np.savez(path, x=np.arange(6, dtype="i2").reshape(3, 2), y=np.ones(3))
>>> with NpzReader(path) as npz:
...     [(m.key, m.shape, str(m.dtype)) for m in npz.members]
...     npz.read(npz.member("x")).tolist()
[('x', (3, 2), 'int16'), ('y', (3,), 'float64')]
[[0, 1], [2, 3], [4, 5]]
"""

from __future__ import annotations

import ast
import math
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..arrays import check_storable_dtype
from ..errors import DtypeError
from .errors import SourceFormatError, SourceNotFoundError, UnsupportedFieldError

__all__ = ["Member", "NpzReader"]

_LOCAL = struct.Struct("<4s5H3I2H")  # local file header (30 bytes)
_LOCAL_SIG = b"PK\x03\x04"
_CENTRAL = struct.Struct("<4s6H3I5H2I")  # central directory entry (46 bytes)
_EOCD = struct.Struct("<4s4H2IH")  # end of central directory (22 bytes)
_EOCD64_LOC = struct.Struct("<4sIQI")  # zip64 end of central directory locator (20 bytes)
_EOCD64 = struct.Struct("<4sQ2H2I4Q")  # zip64 end of central directory (56 bytes)
_U32 = 0xFFFFFFFF
_MAGIC = b"\x93NUMPY"
# The header numpy writes: {'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }
_HEADER = re.compile(
    r"\{'descr': '([^']+)', 'fortran_order': (True|False), 'shape': \(([0-9, ]*)\), \}\s*$")
#: Read-ahead for a member's local + .npy headers (one pread covers both in practice).
_PEEK = 512
#: Largest byte span read in one pread when members are gathered.
SPAN_BYTES = 32 * 2**20


@dataclass(slots=True)
class Member:
    """One ``.npy`` member of an NPZ file, located but not read.

    Attributes
    ----------
    key
        The member name without ``.npy`` (the key ``np.load`` would give).
    dtype, shape, fortran
        From the ``.npy`` header.
    start
        File offset of the member's bytes (the ``.npy`` magic); ``-1`` for compressed members.
    data
        File offset of the array data (after the ``.npy`` header); ``-1`` if compressed.
    end
        File offset just past the member; ``-1`` if compressed.
    crc
        The CRC-32 the zip directory records for the member.
    index
        Position of the member in the zip directory.
    """

    key: str
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran: bool
    start: int
    data: int
    end: int
    crc: int
    index: int

    @property
    def nbytes(self) -> int:
        """Bytes of array data."""
        return math.prod(self.shape) * self.dtype.itemsize

    @property
    def compressed(self) -> bool:
        """Whether the member is deflated (read through ``zipfile``)."""
        return self.start < 0


class NpzReader:
    """An open NPZ file: its members' headers parsed, their data read on demand.

    Parameters
    ----------
    path
        The ``.npz`` file.

    Raises
    ------
    SourceNotFoundError
        The file does not exist.
    SourceFormatError
        Not a zip file, truncated, a member that is not ``.npy`` or whose header is damaged.
    UnsupportedFieldError
        A member holding an object (pickled) array or another dtype storegate cannot store;
        its payload is never read.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise SourceNotFoundError(
                f"no such file: {self.path!r}; give the path of an .npz file.", self.path)
        self._fd = os.open(self.path, os.O_RDONLY)
        self._zip: zipfile.ZipFile | None = None
        self._dtypes: dict[str, np.dtype] = {}
        self._headers: dict[bytes, tuple[np.dtype, tuple[int, ...], bool]] = {}
        try:
            self._size = os.fstat(self._fd).st_size
            entries = self._central_directory()
            self.members: list[Member] = [self._locate(i, *e) for i, e in enumerate(entries)]
        except BaseException:
            self.close()
            raise
        self._by_key = {m.key: m for m in self.members}

    def _central_directory(self) -> list[tuple[str, int, int, int, int, int]]:
        """``(name, method, crc, compressed size, size, local header offset)`` per member,
        parsed from the zip's central directory in one read (``zipfile`` builds a ``ZipInfo``
        per member, which costs about 5 us each)."""
        tail_len = min(self._size, 65536 + _EOCD.size)
        tail = os.pread(self._fd, tail_len, self._size - tail_len)
        pos = tail.rfind(b"PK\x05\x06")
        if pos < 0 or len(tail) - pos < _EOCD.size:
            raise self._bad("not a zip archive, or truncated (no end-of-directory record); "
                            "an NPZ file is written by numpy.savez.")
        _, _, _, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, pos)
        eocd_at = self._size - tail_len + pos
        if count == 0xFFFF or cd_size == _U32 or cd_offset == _U32:
            loc_at = eocd_at - _EOCD64_LOC.size
            loc = os.pread(self._fd, _EOCD64_LOC.size, loc_at) if loc_at >= 0 else b""
            if len(loc) != _EOCD64_LOC.size or loc[:4] != b"PK\x06\x07":
                raise self._bad("damaged zip64 end-of-directory record.")
            rec = os.pread(self._fd, _EOCD64.size, _EOCD64_LOC.unpack(loc)[2])
            if len(rec) != _EOCD64.size or rec[:4] != b"PK\x06\x06":
                raise self._bad("damaged zip64 end-of-directory record.")
            _, _, _, _, _, _, _, count, cd_size, cd_offset = _EOCD64.unpack(rec)
        if cd_offset + cd_size > self._size:
            raise self._bad("truncated: the zip directory points past the end of the file.")
        cd = os.pread(self._fd, cd_size, cd_offset)
        out: list[tuple[str, int, int, int, int, int]] = []
        at = 0
        unpack = _CENTRAL.unpack_from
        for _ in range(count):
            if cd[at:at + 4] != b"PK\x01\x02":
                raise self._bad("damaged zip directory.")
            (_, _, _, flags, method, _, _, crc, csize, usize, nlen, xlen, clen, _, _, _,
             offset) = unpack(cd, at)
            at += _CENTRAL.size
            raw = cd[at:at + nlen]
            name = raw.decode("utf-8" if flags & 0x800 else "cp437")
            if usize == _U32 or csize == _U32 or offset == _U32:
                usize, csize, offset = _zip64(cd[at + nlen:at + nlen + xlen], usize, csize,
                                              offset)
            out.append((name, method, crc, csize, usize, offset))
            at += nlen + xlen + clen
        return out

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Close the file."""
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)
            self._fd = -1
        if getattr(self, "_zip", None) is not None:
            self._zip.close()  # type: ignore[union-attr]
            self._zip = None

    def __enter__(self) -> NpzReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.members)

    def keys(self) -> list[str]:
        """Member keys in zip order."""
        return [m.key for m in self.members]

    def member(self, key: str) -> Member:
        """The member named ``key`` (without ``.npy``)."""
        return self._by_key[key]

    # ------------------------------------------------------------------ headers
    def _bad(self, what: str) -> SourceFormatError:
        return SourceFormatError(f"{self.path!r}: {what}", self.path)

    def _zipfile(self) -> zipfile.ZipFile:
        """``zipfile``'s view of the archive (only for compressed members)."""
        if self._zip is None:
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
                raise self._bad(f"not a readable zip archive ({err}).") from None
        return self._zip

    def _locate(self, index: int, name: str, method: int, crc: int, csize: int, usize: int,
                offset: int) -> Member:
        key = name[:-4] if name.endswith(".npy") else name
        if not name.endswith(".npy"):
            raise self._bad(f"member {name!r} is not a .npy array; an NPZ file holds only "
                            ".npy members (write it with numpy.savez).")
        if method == zipfile.ZIP_STORED:
            head = os.pread(self._fd, _PEEK, offset)
            if len(head) < _LOCAL.size or head[:4] != _LOCAL_SIG:
                raise self._bad(f"the zip entry of member {key!r} is damaged or truncated.")
            fields = _LOCAL.unpack_from(head)
            skip = _LOCAL.size + fields[9] + fields[10]
            start = offset + skip
            if len(head) < skip + 16:
                head = os.pread(self._fd, skip + _PEEK, offset)
            dtype, shape, fortran, hlen = self._parse_npy(head[skip:], key, start)
            end = start + usize
            data = start + hlen
            if end > self._size or data + math.prod(shape) * dtype.itemsize != end:
                raise self._bad(
                    f"member {key!r} is truncated or damaged ({usize} bytes recorded, "
                    f"{math.prod(shape) * dtype.itemsize} bytes of {dtype} {shape} expected "
                    "after its header).")
            return Member(key, dtype, shape, fortran, start, data, end, crc, index)
        try:
            with self._zipfile().open(name) as fp:
                npy = fp.read(_PEEK)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, KeyError) as err:
            raise self._bad(f"member {key!r} cannot be read ({err}).") from None
        dtype, shape, fortran, hlen = self._parse_npy(npy, key, None)
        nbytes = math.prod(shape) * dtype.itemsize
        # the header must describe what the zip entry holds, and deflate expands at most
        # 1032-fold: a header claiming more would make numpy allocate it before reading
        if hlen + nbytes != usize or (method == zipfile.ZIP_DEFLATED
                                      and usize > 1032 * csize + (1 << 16)):
            raise self._bad(
                f"member {key!r} is truncated or damaged ({usize} bytes recorded, {csize} "
                f"compressed; {nbytes} bytes of {dtype} {shape} expected after its header).")
        return Member(key, dtype, shape, fortran, -1, -1, -1, crc, index)

    def _parse_npy(self, npy: bytes, key: str,
                   start: int | None) -> tuple[np.dtype, tuple[int, ...], bool, int]:
        if npy[:6] != _MAGIC or len(npy) < 10:
            raise self._bad(f"member {key!r} is not a .npy array (bad magic).")
        major = npy[6]
        if major == 1:
            hlen, pos = int.from_bytes(npy[8:10], "little"), 10
        elif major in (2, 3):
            hlen, pos = int.from_bytes(npy[8:12], "little"), 12
        else:
            raise self._bad(f"member {key!r} has .npy format version {major}, which numpy "
                            "does not write.")
        if len(npy) < pos + hlen:
            if start is None:
                raise self._bad(f"member {key!r} has a .npy header longer than {_PEEK} bytes.")
            npy = os.pread(self._fd, pos + hlen, start)
            if len(npy) < pos + hlen:
                raise self._bad(f"member {key!r} is truncated inside its header.")
        raw = npy[pos:pos + hlen]
        known = self._headers.get(raw)
        if known is not None:
            return known[0], known[1], known[2], pos + hlen
        text = raw.decode("utf8" if major == 3 else "latin1")
        m = _HEADER.match(text)
        if m is not None:
            descr, fortran = m.group(1), m.group(2) == "True"
            shape = tuple(int(s) for s in m.group(3).replace(",", " ").split())
            if any(s < 0 for s in shape):
                raise self._bad(f"member {key!r} has a negative shape {shape} in its header.")
            dtype = self._dtypes.get(descr)
            if dtype is None:
                dtype = self._dtype(descr, key)
                self._dtypes[descr] = dtype
        else:  # any other header numpy may write (structured descr, odd spacing)
            try:
                d = ast.literal_eval(text)
                fortran = bool(d["fortran_order"])
                shape = tuple(int(s) for s in d["shape"])
                descr_any: Any = d["descr"]
                if any(s < 0 for s in shape):
                    raise ValueError(shape)
            except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError):
                raise self._bad(f"member {key!r} has a damaged .npy header.") from None
            dtype = self._dtype(descr_any, key)
        if len(self._headers) < 65536:
            self._headers[raw] = (dtype, shape, fortran)
        return dtype, shape, fortran, pos + hlen

    def _dtype(self, descr: Any, key: str) -> np.dtype:
        try:
            dtype = np.lib.format.descr_to_dtype(descr)
        except (ValueError, TypeError):
            raise self._bad(f"member {key!r} has an unknown dtype {descr!r}.") from None
        if dtype.hasobject:
            raise UnsupportedFieldError(
                f"{self.path!r}: member {key!r} holds Python objects (a pickled object array); "
                "storegate never unpickles. Re-save it as a numeric array (e.g. pad or split "
                "ragged data into one member per item, as kinoml does).", self.path)
        try:
            check_storable_dtype(dtype, f"member {key!r}")
        except DtypeError as err:
            raise UnsupportedFieldError(f"{self.path!r}: {err}", self.path) from None
        return dtype

    # ------------------------------------------------------------------ data
    def _array(self, m: Member, buf: memoryview, base: int) -> np.ndarray:
        """The array of ``m`` from ``buf`` (which starts at file offset ``base``)."""
        lo, hi = m.start - base, m.end - base
        if zlib.crc32(buf[lo:hi]) != m.crc:
            raise self._bad(f"member {m.key!r} is damaged (CRC-32 mismatch).")
        arr = np.frombuffer(buf, dtype=m.dtype, count=math.prod(m.shape), offset=m.data - base)
        if m.fortran and len(m.shape) > 1:
            return arr.reshape(m.shape[::-1]).T
        return arr.reshape(m.shape)

    def _pread(self, offset: int, size: int) -> memoryview:
        buf = bytearray(size)
        view = memoryview(buf)
        got = 0
        while got < size:
            n = os.preadv(self._fd, [view[got:]], offset + got)
            if n == 0:
                raise self._bad(f"unexpected end of file at byte {offset + got} (truncated).")
            got += n
        return view

    def read(self, m: Member) -> np.ndarray:
        """The whole array of member ``m`` (a fresh, writable copy's view of its own buffer)."""
        if m.compressed:
            try:
                with self._zipfile().open(m.key + ".npy") as fp:
                    arr = np.lib.format.read_array(fp, allow_pickle=False)
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error, ValueError,
                    MemoryError) as err:
                raise self._bad(f"member {m.key!r} cannot be read ({err}).") from None
            return np.asarray(arr)
        return self._array(m, self._pread(m.start, m.end - m.start), m.start)

    def read_many(self, members: Sequence[Member]) -> list[np.ndarray]:
        """The arrays of several members, reading neighbouring members with one ``pread``.

        The arrays are views into shared read buffers (valid as long as they are referenced);
        copy them (``np.concatenate``/``np.stack`` do) before keeping them long.
        """
        out: list[np.ndarray | None] = [None] * len(members)
        stored = [(m.start, i) for i, m in enumerate(members) if not m.compressed]
        for i, m in enumerate(members):
            if m.compressed:
                out[i] = self.read(m)
        stored.sort()
        for group in _spans(stored, members):
            lo = members[group[0]].start
            hi = max(members[i].end for i in group)
            buf = self._pread(lo, hi - lo)
            for i in group:
                out[i] = self._array(members[i], buf, lo)
        return out  # type: ignore[return-value]

    def read_rows(self, m: Member, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of a C-ordered stored member (for streaming big arrays);
        other members are read whole and sliced. The CRC is not checked (use
        :meth:`verify` once per member)."""
        if m.compressed or (m.fortran and len(m.shape) > 1) or not m.shape:
            return self.read(m)[start:stop]
        row = int(np.prod(m.shape[1:], dtype=np.int64)) * m.dtype.itemsize
        buf = self._pread(m.data + start * row, (stop - start) * row)
        return np.frombuffer(buf, dtype=m.dtype).reshape((stop - start, *m.shape[1:]))

    def header_crc(self, m: Member) -> int:
        """CRC-32 of a stored member's ``.npy`` header (to continue over its data rows)."""
        return zlib.crc32(self._pread(m.start, m.data - m.start))

    def verify(self, m: Member) -> None:
        """Check the CRC-32 of a member by streaming it (bounded memory)."""
        if m.compressed:
            try:
                with self._zipfile().open(m.key + ".npy") as fp:
                    while fp.read(SPAN_BYTES):
                        pass
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
                raise self._bad(f"member {m.key!r} is damaged ({err}).") from None
            return
        crc = 0
        for pos in range(m.start, m.end, SPAN_BYTES):
            crc = zlib.crc32(self._pread(pos, min(SPAN_BYTES, m.end - pos)), crc)
        if crc != m.crc:
            raise self._bad(f"member {m.key!r} is damaged (CRC-32 mismatch).")


def _spans(stored: list[tuple[int, int]], members: Sequence[Member]) -> Iterator[list[int]]:
    """Group members (sorted by offset) into byte spans worth one read each: neighbours whose
    gap is small and whose span stays under :data:`SPAN_BYTES`."""
    group: list[int] = []
    lo = hi = used = 0
    for start, i in stored:
        m = members[i]
        size = m.end - m.start
        if group and (start - hi > 65536 or max(hi, m.end) - lo > max(SPAN_BYTES, 2 * used)):
            yield group
            group = []
        if not group:
            lo, hi, used = start, m.end, 0
        group.append(i)
        hi = max(hi, m.end)
        used += size
    if group:
        yield group


def _zip64(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """Sizes and offset from a zip64 extra field (for the values stored as 0xFFFFFFFF)."""
    at = 0
    while at + 4 <= len(extra):
        tag, size = struct.unpack_from("<2H", extra, at)
        if tag == 1:
            values = iter(struct.unpack_from(f"<{size // 8}Q", extra, at + 4))
            if usize == _U32:
                usize = next(values)
            if csize == _U32:
                csize = next(values)
            if offset == _U32:
                offset = next(values)
            break
        at += 4 + size
    return usize, csize, offset
