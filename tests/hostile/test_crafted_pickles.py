"""Case 4: NPZ files carrying pickles.

Each crafted file holds a pickle whose unpickling runs ``os.system`` (creating a marker file)
and opens a second marker file. A sanity check proves the payload is live (``np.load`` with
``allow_pickle=True`` in a child process does create the marker). Then every storegate entry
point that reads NPZ files — ``import_npz``, ``convert`` (and ``storegate convert``),
kinoml's ``XyTorchDataset.from_npz`` / ``MultiXTorchDataset.from_npz`` — must refuse the
file with a ``StoregateError`` naming the member, and neither marker may ever exist.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_crafted_support import assert_cli_convert_refuses, child_env, fresh_python

import storegate.convert as convert
from storegate import StoreGate
from storegate.errors import StoregateError


class Payload:
    """Unpickling it runs a shell command and writes a file (``__reduce__``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


class Payload2:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def objects(tmp_path: Path, n: int = 4) -> np.ndarray:
    arr = np.empty(n, dtype=object)
    for i in range(n):
        arr[i] = Payload(tmp_path / "PWNED") if i % 2 else Payload2(tmp_path / "PWNED2")
    return arr


def markers(tmp_path: Path) -> list[str]:
    return [m for m in ("PWNED", "PWNED2") if (tmp_path / m).exists()]


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def crafted(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, the member its error must name)."""
    obj = objects(tmp_path)
    files: dict[str, tuple[Path, str]] = {}
    p = tmp_path / "plain.npz"
    np.savez(p, x=np.arange(4.0), evil=obj)
    files["object_member"] = (p, "evil")
    p = tmp_path / "compressed.npz"
    np.savez_compressed(p, x=np.arange(4.0), evil=obj)
    files["object_member_compressed"] = (p, "evil")
    p = tmp_path / "kinoml_X.npz"
    np.savez(p, X=obj, y=np.arange(4.0))
    files["kinoml_X"] = (p, "X")
    p = tmp_path / "kinoml_y.npz"
    np.savez(p, X=np.ones((4, 3)), y=obj)
    files["kinoml_y"] = (p, "y")
    p = tmp_path / "kinoml_idx.npz"
    np.savez(p, X=np.ones((4, 3)), y=np.arange(4.0), idx_train=obj)
    files["kinoml_idx"] = (p, "idx_train")
    p = tmp_path / "kinoml_item.npz"
    np.savez(p, X_s0_a0_=np.ones((2, 3)), X_s1_a0_=obj, y=np.arange(2.0))
    files["kinoml_item"] = (p, "X_s1_a0_")
    # a structured dtype with an object field
    rec = np.empty(4, dtype=[("a", "f8"), ("b", "O")])
    rec["b"] = obj
    p = tmp_path / "record.npz"
    np.savez(p, x=np.arange(4.0), rec=rec)
    files["record_with_object"] = (p, "rec")
    # a member that is a bare pickle, not a .npy array
    p = tmp_path / "bare.npz"
    import pickle

    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x.npy", npy_bytes(np.arange(4.0)))
        z.writestr("evil.npy", pickle.dumps(obj))
    files["bare_pickle_member"] = (p, "evil")
    # a .npy header that claims floats over a pickled payload
    head = npy_bytes(np.zeros(4))
    hlen = 10 + int.from_bytes(head[8:10], "little")
    p = tmp_path / "disguised.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x.npy", npy_bytes(np.arange(4.0)))
        z.writestr("evil.npy", head[:hlen] + pickle.dumps(obj))
    files["pickle_behind_float_header"] = (p, "evil")
    # a lone .npy file holding a pickled object array
    p = tmp_path / "lone.npy"
    p.write_bytes(npy_bytes(obj))
    files["npy_file"] = (p, "lone.npy")
    return files


def test_the_payload_is_live(tmp_path: Path) -> None:
    """np.load with allow_pickle=True runs it: the markers below mean something."""
    p = tmp_path / "plain.npz"
    np.savez(p, evil=objects(tmp_path))
    code = ("import numpy as np, sys; sys.path.insert(0, sys.argv[2]); "
            "np.load(sys.argv[1], allow_pickle=True)['evil']")
    subprocess.run([sys.executable, "-c", code, str(p), str(Path(__file__).parent)],
                   check=True, env=child_env(), cwd=str(Path(__file__).parent))
    assert markers(tmp_path) == ["PWNED", "PWNED2"]


def test_import_and_convert_never_unpickle(tmp_path: Path) -> None:
    files = crafted(tmp_path)
    for name, (path, member) in files.items():
        calls = {
            "import_npz": lambda p=path: convert.import_npz(p, StoreGate(data_id="d")),
            "import_npz_plain": lambda p=path: convert.import_npz(
                p, StoreGate(data_id="d"), layout="plain"),
            "convert": lambda p=path, n=name: convert.convert(p, tmp_path / f"out-{n}.zarr"),
        }
        for what, call in calls.items():
            with pytest.raises(StoregateError) as info:
                call()
            assert member in str(info.value), f"{name} {what}: {info.value}"
            assert not markers(tmp_path), f"{name} {what} unpickled"
            assert not (tmp_path / f"out-{name}.zarr").exists(), f"{name}: output left behind"


def test_cli_convert_never_unpickles(tmp_path: Path) -> None:
    assert_cli_convert_refuses(tmp_path, crafted(tmp_path))
    assert not markers(tmp_path)


def test_kinoml_from_npz_never_unpickles(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from storegate.torch.kinoml import MultiXTorchDataset, XyTorchDataset

    files = crafted(tmp_path)
    for name, (path, member) in files.items():
        for cls in (XyTorchDataset, MultiXTorchDataset):
            for store in (None, tmp_path / f"k-{name}-{cls.__name__}.zarr"):
                with pytest.raises(StoregateError) as info:
                    cls.from_npz(path, store=store)
                assert member in str(info.value), f"{name} {cls.__name__}: {info.value}"
                assert not markers(tmp_path), f"{name} {cls.__name__} unpickled"


def test_npz_header_claiming_huge_shape_is_refused_before_allocating(tmp_path: Path) -> None:
    """A compressed member whose .npy header claims 10**9 (or 10**15) rows over 10 rows of
    data: numpy's reader allocates the claimed size before reading; storegate compares the
    claim with the zip entry's size first (SourceFormatError naming the member), in a child
    limited to 2 GiB of address space."""

    def lying(shape: tuple[int, ...]) -> bytes:
        raw = npy_bytes(np.arange(10.0))
        hlen = int.from_bytes(raw[8:10], "little")
        header = raw[10:10 + hlen].decode("latin1").replace("(10,)", repr(shape)).rstrip()
        header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
        return raw[:8] + len(header).to_bytes(2, "little") + header.encode("latin1") + raw[
            10 + hlen:]

    paths = []
    for i, shape in enumerate([(10**9,), (10**15,), (10**8, 1)]):
        p = tmp_path / f"lie{i}.npz"
        with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("big.npy", lying(shape))
        paths.append(str(p))
    code = r"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
import storegate.convert as convert
from storegate import StoreGate
from storegate.errors import StoregateError
for p in sys.argv[1:]:
    try:
        convert.import_npz(p, StoreGate(data_id="d"))
        print("OK")
    except StoregateError as err:
        print(type(err).__name__, "|", err)
print("RSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""
    proc = subprocess.run(fresh_python("-c", code, *paths), capture_output=True, text=True,
                          env=child_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for line in lines[:-1]:
        assert line.startswith("SourceFormatError |") and "'big'" in line, line
        assert "truncated or damaged" in line, line
    assert int(lines[-1].split()[1]) < 600
