"""``storegate.convert.npzfile.NpzReader``: the streaming NPZ member reader."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storegate.convert import npzfile
from storegate.convert.errors import (
    ConversionError,
    SourceFormatError,
    SourceNotFoundError,
    UnsupportedFieldError,
)
from storegate.convert.npzfile import NpzReader
from storegate.errors import StoregateError


# ---------------------------------------------------------------------------------- helpers
def npy_bytes(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def write_zip(path: Path, members: dict[str, bytes],
              methods: dict[str, int] | None = None, force_zip64: bool = False) -> Path:
    """A zip archive of raw members (names as given), each stored unless ``methods`` says."""
    methods = methods or {}
    with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
        for name, raw in members.items():
            method = methods.get(name, zipfile.ZIP_STORED)
            if force_zip64:
                zinfo = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                zinfo.compress_type = method
                with zf.open(zinfo, "w", force_zip64=True) as fp:
                    fp.write(raw)
            else:
                zf.writestr(name, raw, compress_type=method)
    return path


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def flip_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


class Evil:
    """Unpickling an object array holding this creates ``marker`` (it must never happen)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


ARRAYS = {
    "f8": np.arange(12, dtype="f8").reshape(4, 3) / 7,
    "f4": np.linspace(0, 1, 10, dtype="f4"),
    "f2": np.arange(5, dtype="f2") / 3,
    "i8": np.arange(-5, 5, dtype="i8"),
    "u1": np.arange(7, dtype="u1"),
    "bool": np.array([True, False, True]),
    "c8": (np.arange(4) + 1j).astype("c8"),
    "be": np.arange(6, dtype=">i4").reshape(3, 2),
    "be_f8": np.arange(4, dtype=">f8") * 0.5,
    "fortran2d": np.asfortranarray(np.arange(12, dtype="f8").reshape(3, 4)),
    "fortran3d": np.asfortranarray(np.arange(24, dtype="i2").reshape(2, 3, 4)),
    "empty": np.zeros((0, 3), dtype="f4"),
    "zero_k": np.zeros((3, 0), dtype="i8"),
    "scalar": np.array(3.5),
    "deep": np.arange(2 * 3 * 4 * 5, dtype="u2").reshape(2, 3, 4, 5),
}


@pytest.fixture(params=[False, True], ids=["savez", "savez_compressed"])
def compressed(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def mixed_file(tmp_path: Path, compressed: bool) -> Path:
    path = tmp_path / "mixed.npz"
    (np.savez_compressed if compressed else np.savez)(path, **ARRAYS)
    return path


# ---------------------------------------------------------------------------------- headers
def test_members_report_dtype_shape_and_order(mixed_file: Path, compressed: bool) -> None:
    with NpzReader(mixed_file) as npz:
        assert npz.keys() == list(ARRAYS)
        assert len(npz) == len(ARRAYS)
        for i, m in enumerate(npz.members):
            want = ARRAYS[m.key]
            assert m.index == i
            assert m.dtype == want.dtype  # byte order included
            assert m.shape == want.shape
            assert m.nbytes == want.nbytes
            assert m.fortran == (want.ndim > 1 and not want.flags.c_contiguous)
            assert m.compressed is compressed
            assert npz.member(m.key) is m
        with pytest.raises(KeyError):
            npz.member("missing")


def test_read_gives_every_array_back(mixed_file: Path) -> None:
    with NpzReader(mixed_file) as npz:
        for key, want in ARRAYS.items():
            got = npz.read(npz.member(key))
            assert_same(got, want)
        assert npz.read(npz.member("be")).dtype.byteorder == ">"


def test_fortran_member_round_trips_in_fortran_order(tmp_path: Path) -> None:
    arr = np.asfortranarray(np.arange(30, dtype="f4").reshape(5, 6))
    path = tmp_path / "f.npz"
    np.savez(path, a=arr)
    with NpzReader(path) as npz:
        m = npz.member("a")
        assert m.fortran
        got = npz.read(m)
        assert_same(got, arr)
        assert got.flags.f_contiguous
        # rows of a Fortran member: read whole and sliced
        assert_same(npz.read_rows(m, 1, 4), arr[1:4])
        assert_same(npz.read_many([m])[0], arr)


def test_read_many_matches_read(mixed_file: Path) -> None:
    with NpzReader(mixed_file) as npz:
        members = list(reversed(npz.members))
        for m, got in zip(members, npz.read_many(members), strict=True):
            assert_same(got, ARRAYS[m.key])
        assert npz.read_many([]) == []


@pytest.mark.parametrize("span", [1, 100, 1000])
def test_read_many_across_spans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                span: int) -> None:
    """Small SPAN_BYTES: members are gathered in many preads; order and values hold,
    whatever the order asked (repeats and gaps included)."""
    monkeypatch.setattr(npzfile, "SPAN_BYTES", span)
    rng = np.random.default_rng(3)
    arrays = {f"m{i}": rng.standard_normal(int(rng.integers(0, 40))).astype("f8")
              for i in range(60)}
    arrays["big"] = np.arange(5000, dtype="i8")
    path = tmp_path / "spans.npz"
    np.savez(path, **arrays)
    with NpzReader(path) as npz:
        keys = list(arrays)
        order = [keys[i] for i in rng.permutation(len(keys))] + ["m3", "m3", "big"]
        order = [k for k in order if k != "m10"]  # a gap
        got = npz.read_many([npz.member(k) for k in order])
        for k, arr in zip(order, got, strict=True):
            assert_same(arr, arrays[k])


def test_spans_group_neighbours(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = {f"m{i}": np.full(8, i, "f8") for i in range(20)}
    path = tmp_path / "g.npz"
    np.savez(path, **arrays)
    with NpzReader(path) as npz:
        stored = sorted((m.start, i) for i, m in enumerate(npz.members))
        assert len(list(npzfile._spans(stored, npz.members))) == 1
        monkeypatch.setattr(npzfile, "SPAN_BYTES", 1)
        groups = list(npzfile._spans(stored, npz.members))
        assert len(groups) > 1
        assert sorted(i for g in groups for i in g) == list(range(20))


def test_read_many_mixes_stored_and_deflated_members(tmp_path: Path) -> None:
    arrays = {f"a{i}": np.arange(i, i + 10, dtype="i4") for i in range(6)}
    path = write_zip(
        tmp_path / "mix.npz", {f"{k}.npy": npy_bytes(v) for k, v in arrays.items()},
        methods={"a1.npy": zipfile.ZIP_DEFLATED, "a4.npy": zipfile.ZIP_DEFLATED})
    with NpzReader(path) as npz:
        assert [m.compressed for m in npz.members] == [False, True, False, False, True, False]
        got = npz.read_many(npz.members[::-1])
        for m, arr in zip(npz.members[::-1], got, strict=True):
            assert_same(arr, arrays[m.key])


def test_read_rows_streams_c_ordered_members(tmp_path: Path) -> None:
    arr = np.arange(1000 * 3, dtype="<i8").reshape(1000, 3)
    path = tmp_path / "rows.npz"
    np.savez(path, a=arr)
    with NpzReader(path) as npz:
        m = npz.member("a")
        for a, b in [(0, 1), (10, 500), (999, 1000), (0, 1000), (5, 5)]:
            assert_same(npz.read_rows(m, a, b), arr[a:b])
        # the CRC over header + row blocks equals the member's CRC
        crc = npz.header_crc(m)
        for a in range(0, 1000, 300):
            crc = zlib.crc32(npz.read_rows(m, a, min(1000, a + 300)).tobytes(), crc)
        assert crc == m.crc


def test_read_rows_of_compressed_member(tmp_path: Path) -> None:
    arr = np.arange(40, dtype="f4").reshape(20, 2)
    path = tmp_path / "c.npz"
    np.savez_compressed(path, a=arr)
    with NpzReader(path) as npz:
        assert_same(npz.read_rows(npz.member("a"), 3, 9), arr[3:9])
        npz.verify(npz.member("a"))


def test_verify_streams_and_detects_damage(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(npzfile, "SPAN_BYTES", 64)
    arr = np.arange(500, dtype="f8")
    path = tmp_path / "v.npz"
    np.savez(path, a=arr, b=arr + 1)
    with NpzReader(path) as npz:
        npz.verify(npz.member("a"))
        npz.verify(npz.member("b"))
        at = npz.member("b").data + 100
    flip_byte(path, at)
    with NpzReader(path) as npz:
        npz.verify(npz.member("a"))
        with pytest.raises(SourceFormatError, match="'b' is damaged"):
            npz.verify(npz.member("b"))
        with pytest.raises(SourceFormatError, match="CRC"):
            npz.read(npz.member("b"))
        with pytest.raises(SourceFormatError, match="CRC"):
            npz.read_many(npz.members)
        assert_same(npz.read(npz.member("a")), arr)


def test_damaged_compressed_member(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    np.savez_compressed(path, a=np.random.default_rng(0).standard_normal(4000))
    size = path.stat().st_size
    flip_byte(path, size // 2)
    with pytest.raises(SourceFormatError) as err, NpzReader(path) as npz:
        npz.read(npz.member("a"))
    assert str(path) in str(err.value)


def test_headers_longer_than_the_peek_are_read(tmp_path: Path) -> None:
    arr = np.arange(6, dtype="f4").reshape(2, 3)
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
    header = header + " " * (2000 - len(header) - 11) + "\n"
    raw = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1")
    raw += arr.tobytes()
    assert np.array_equal(np.load(io.BytesIO(raw)), arr)  # numpy reads it too
    path = write_zip(tmp_path / "long.npz", {"a.npy": raw})
    with NpzReader(path) as npz:
        m = npz.member("a")
        assert (m.dtype, m.shape) == (np.dtype("f4"), (2, 3))
        assert_same(npz.read(m), arr)


def test_npy_format_version_2_header(tmp_path: Path) -> None:
    arr = np.arange(5, dtype="i2")
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=(2, 0))
    path = write_zip(tmp_path / "v2.npz", {"a.npy": buf.getvalue()})
    with NpzReader(path) as npz:
        assert_same(npz.read(npz.member("a")), arr)


def test_header_cache_is_not_confused_by_shared_headers(tmp_path: Path) -> None:
    """Many members with the same header text share one parse; data stays their own."""
    arrays = {f"m{i}": np.full((2, 2), i, dtype="i4") for i in range(50)}
    path = tmp_path / "same.npz"
    np.savez(path, **arrays)
    with NpzReader(path) as npz:
        for m, got in zip(npz.members, npz.read_many(npz.members), strict=True):
            assert_same(got, arrays[m.key])


# ---------------------------------------------------------------------------------- zip64
def test_force_zip64_members(tmp_path: Path, compressed: bool) -> None:
    arrays = {"a": np.arange(100, dtype="f8"), "b": np.ones((3, 4), "i2")}
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    path = write_zip(tmp_path / "z64.npz", {f"{k}.npy": npy_bytes(v) for k, v in arrays.items()},
                     methods=dict.fromkeys(("a.npy", "b.npy"), method), force_zip64=True)
    with np.load(path) as ref:
        assert_same(ref["a"], arrays["a"])
    with NpzReader(path) as npz:
        for m in npz.members:
            assert_same(npz.read(m), arrays[m.key])


def test_zip64_extra_field_parsing() -> None:
    u32 = 0xFFFFFFFF
    extra = struct.pack("<2H", 0x5455, 5) + b"\x00" * 5  # another field first
    extra += struct.pack("<2H3Q", 1, 24, 10_000_000_000, 9_000_000_000, 8_000_000_000)
    assert npzfile._zip64(extra, u32, u32, u32) == (10_000_000_000, 9_000_000_000,
                                                    8_000_000_000)
    only_offset = struct.pack("<2HQ", 1, 8, 5_000_000_000)
    assert npzfile._zip64(only_offset, 7, 7, u32) == (7, 7, 5_000_000_000)
    assert npzfile._zip64(b"", 1, 2, 3) == (1, 2, 3)


@pytest.fixture(scope="module")
def many_members(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """70,000 one-float members: more than a zip's 16-bit member count (zip64 end record)."""
    n = 70_000
    path = tmp_path_factory.mktemp("many") / "many.npz"
    header = npy_bytes(np.zeros(1, "f8"))[:-8]
    with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
        for i in range(n):
            zf.writestr(f"m{i}.npy", header + np.float64(i).tobytes())
    return path, n


def test_more_than_65535_members(many_members: tuple[Path, int]) -> None:
    path, n = many_members
    raw = path.read_bytes()
    assert b"PK\x06\x06" in raw[-200:]  # zip64 end of central directory
    with NpzReader(path) as npz:
        assert len(npz) == n
        assert npz.keys()[:3] == ["m0", "m1", "m2"]
        assert npz.keys()[-1] == f"m{n - 1}"
        got = np.concatenate(npz.read_many(npz.members))
        assert_same(got, np.arange(n, dtype="f8"))


# ---------------------------------------------------------------------------------- refusals
def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.npz"
    with pytest.raises(SourceNotFoundError) as err:
        NpzReader(path)
    assert isinstance(err.value, FileNotFoundError)
    assert err.value.path == str(path)
    with pytest.raises(SourceNotFoundError):
        NpzReader(tmp_path)  # a directory is no NPZ file


@pytest.mark.parametrize("content", [b"", b"hello, not a zip at all" * 10,
                                     b"PK\x05\x06", b"\x93NUMPY" + b"\x00" * 100],
                         ids=["empty", "text", "short-eocd", "npy"])
def test_not_a_zip(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(SourceFormatError) as err:
        NpzReader(path)
    assert str(path) in str(err.value)
    assert isinstance(err.value, ValueError)
    assert isinstance(err.value, StoregateError)


def test_truncated_everywhere(tmp_path: Path) -> None:
    src = tmp_path / "good.npz"
    np.savez(src, a=np.arange(300.0), b=np.arange(50, dtype="i4"))
    raw = src.read_bytes()
    with NpzReader(src) as npz:
        cut_points = [10, npz.member("a").data + 40, npz.member("b").start + 5,
                      npz.member("b").end, len(raw) - 60, len(raw) - 1]
    for cut in cut_points:
        path = tmp_path / f"cut{cut}.npz"
        path.write_bytes(raw[:cut])
        with pytest.raises(SourceFormatError) as err, NpzReader(path) as npz:
            npz.read_many(npz.members)
        assert str(path) in str(err.value), cut


def test_member_that_is_not_npy(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "txt.npz", {"a.npy": npy_bytes(np.arange(3)),
                                            "notes.txt": b"hello"})
    with pytest.raises(SourceFormatError, match=r"'notes\.txt' is not a \.npy"):
        NpzReader(path)


def test_member_with_bad_magic(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "magic.npz", {"a.npy": b"not an npy file at all"})
    with pytest.raises(SourceFormatError, match=r"'a' is not a \.npy array"):
        NpzReader(path)


def test_member_with_damaged_header(tmp_path: Path) -> None:
    raw = bytearray(npy_bytes(np.arange(4, dtype="f8")))
    raw[12:20] = b"@@@@@@@@"
    path = write_zip(tmp_path / "hdr.npz", {"a.npy": bytes(raw)})
    with pytest.raises(SourceFormatError, match=r"damaged \.npy header"):
        NpzReader(path)


def test_member_size_disagrees_with_header(tmp_path: Path) -> None:
    raw = npy_bytes(np.arange(10, dtype="f8"))
    path = write_zip(tmp_path / "short.npz", {"a.npy": raw[:-8]})
    with pytest.raises(SourceFormatError, match="truncated or damaged"):
        NpzReader(path)


@pytest.mark.parametrize("compress", [False, True])
def test_pickled_object_array_is_never_unpickled(tmp_path: Path, compress: bool) -> None:
    marker = tmp_path / "unpickled.marker"
    obj = np.array([Evil(str(marker)), 1], dtype=object)
    raw = npy_bytes(obj, allow_pickle=True)
    assert not marker.exists()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    path = write_zip(tmp_path / "evil.npz", {"ok.npy": npy_bytes(np.arange(2)), "obj.npy": raw},
                     methods={"obj.npy": method})
    with pytest.raises(UnsupportedFieldError) as err:
        NpzReader(path)
    assert "'obj'" in str(err.value) and str(path) in str(err.value)
    assert isinstance(err.value, ConversionError)
    assert not marker.exists()
    # the payload is live: numpy with allow_pickle=True would run it (not storegate)
    control = tmp_path / "control"
    control.mkdir()
    live = np.array([Evil(str(control / "ran")), 1], dtype=object)
    np.load(io.BytesIO(npy_bytes(live, allow_pickle=True)), allow_pickle=True)
    assert (control / "ran").exists()


@pytest.mark.parametrize("arr", [np.array(["a", "bc"]), np.array([b"x"]),
                                 np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]),
                                 np.zeros(2, dtype="V4")],
                         ids=["unicode", "bytes", "structured", "void"])
def test_unstorable_dtypes_are_refused(tmp_path: Path, arr: np.ndarray) -> None:
    path = tmp_path / "dt.npz"
    np.savez(path, a=arr)
    with pytest.raises(UnsupportedFieldError) as err:
        NpzReader(path)
    assert str(path) in str(err.value)


def test_close_is_idempotent_and_releases_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.npz"
    np.savez_compressed(path, a=np.arange(3))
    npz = NpzReader(path)
    npz.read(npz.member("a"))  # opens zipfile for the deflated member
    npz.close()
    npz.close()
    assert npz._fd == -1 and npz._zip is None
