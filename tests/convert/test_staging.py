"""``storegate.convert.staging``: write beside the destination, rename into place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storegate.convert import staging
from storegate.convert.errors import ConversionError, DestinationExistsError
from storegate.convert.staging import remove_path, staged


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    try:
        os.kill(proc.pid, 0)
    except ProcessLookupError:
        return proc.pid
    pytest.skip("the pid of the finished process was reused at once")


def hidden(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.startswith("."))


# ---------------------------------------------------------------------------------- success
def test_file_is_written_beside_then_renamed(tmp_path: Path) -> None:
    dst = tmp_path / "out.npz"
    with staged(dst) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)
        name = os.path.basename(tmp)
        assert name.startswith(f".out.npz.sg-tmp-{os.getpid()}-")
        Path(tmp).write_text("new")
        assert not dst.exists()  # nothing under the destination's name yet
    assert dst.read_text() == "new"
    assert os.listdir(tmp_path) == ["out.npz"]


def test_directory_destination_and_missing_parent(tmp_path: Path) -> None:
    dst = tmp_path / "a" / "b" / "store.zarr"
    with staged(str(dst)) as tmp:
        os.makedirs(os.path.join(tmp, "d"))
        Path(tmp, "d", "x").write_text("1")
    assert (dst / "d" / "x").read_text() == "1"
    assert os.listdir(dst.parent) == ["store.zarr"]


def test_two_stagings_get_different_temporaries(tmp_path: Path) -> None:
    with staged(tmp_path / "a") as t1, staged(tmp_path / "b") as t2:
        assert t1 != t2
        Path(t1).write_text("a")
        Path(t2).write_text("b")
    assert (tmp_path / "a").read_text() == "a" and (tmp_path / "b").read_text() == "b"


# ---------------------------------------------------------------------------------- failures
def test_existing_destination_raises_before_the_block(tmp_path: Path) -> None:
    dst = tmp_path / "out.npz"
    dst.write_text("old")
    entered = False
    with pytest.raises(DestinationExistsError) as err:  # noqa: SIM117
        with staged(dst):
            entered = True
    assert not entered
    assert isinstance(err.value, FileExistsError)
    assert err.value.path == str(dst) and "overwrite=True" in str(err.value)
    assert dst.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.npz"]


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_exception_in_the_block_removes_the_temporary(tmp_path: Path, kind: str) -> None:
    dst = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"), staged(dst) as tmp:
        if kind == "file":
            Path(tmp).write_text("half")
        else:
            os.makedirs(os.path.join(tmp, "sub"))
            Path(tmp, "sub", "f").write_text("half")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_keyboard_interrupt_removes_the_temporary(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), staged(tmp_path / "out") as tmp:
        Path(tmp).write_text("half")
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_block_that_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="wrote nothing"), staged(tmp_path / "out"):
        pass
    assert os.listdir(tmp_path) == []


def test_destination_created_meanwhile_is_not_clobbered(tmp_path: Path) -> None:
    dst = tmp_path / "out"
    with pytest.raises(DestinationExistsError, match="during the conversion"), \
            staged(dst) as tmp:
        Path(tmp).write_text("mine")
        dst.write_text("theirs")
    assert dst.read_text() == "theirs"
    assert os.listdir(tmp_path) == ["out"]


def test_urls_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConversionError, match="local paths"), staged("s3://bucket/out.zarr"):
        pass
    assert os.listdir(tmp_path) == []  # no local "s3:" directory either


# ---------------------------------------------------------------------------------- overwrite
@pytest.mark.parametrize("kind", ["file", "directory"])
def test_overwrite_keeps_the_old_until_the_new_is_in_place(tmp_path: Path, kind: str) -> None:
    dst = tmp_path / "out"
    if kind == "file":
        dst.write_text("old")
    else:
        dst.mkdir()
        (dst / "old").write_text("old")
    with staged(dst, overwrite=True) as tmp:
        # while the new one is written the old one is untouched
        assert (dst.read_text() if kind == "file" else (dst / "old").read_text()) == "old"
        if kind == "file":
            Path(tmp).write_text("new")
        else:
            os.makedirs(tmp)
            Path(tmp, "new").write_text("new")
    if kind == "file":
        assert dst.read_text() == "new"
    else:
        assert os.listdir(dst) == ["new"]
    assert os.listdir(tmp_path) == ["out"]  # no .sg-old- left


def test_overwrite_failure_keeps_the_old(tmp_path: Path) -> None:
    dst = tmp_path / "out"
    dst.write_text("old")
    with pytest.raises(OSError, match="disk full"), staged(dst, overwrite=True) as tmp:
        Path(tmp).write_text("ne")
        raise OSError("disk full")
    assert dst.read_text() == "old"
    assert os.listdir(tmp_path) == ["out"]


def test_old_is_put_back_when_the_final_rename_fails(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    dst = tmp_path / "out"
    dst.write_text("old")
    real = os.replace

    def replace(src: str, target: str) -> None:
        if ".sg-tmp-" in os.path.basename(src) and target == str(dst):
            raise OSError("rename failed")
        real(src, target)

    monkeypatch.setattr(staging.os, "replace", replace)
    with pytest.raises(OSError, match="rename failed"), staged(dst, overwrite=True) as tmp:
        Path(tmp).write_text("new")
    monkeypatch.undo()
    assert dst.read_text() == "old"
    assert os.listdir(tmp_path) == ["out"]


# ---------------------------------------------------------------------------------- stale
def test_stale_temporaries_of_dead_processes_are_removed(tmp_path: Path,
                                                         dead_pid: int) -> None:
    dst = tmp_path / "out.zarr"
    dead_dir = tmp_path / f".out.zarr.sg-tmp-{dead_pid}-abcd1234"
    dead_dir.mkdir()
    (dead_dir / "chunk").write_text("x")
    dead_file = tmp_path / f".out.zarr.sg-tmp-{dead_pid}-ffff0000"
    dead_file.write_text("x")
    live = [tmp_path / f".out.zarr.sg-tmp-{os.getpid()}-00000000",
            tmp_path / f".out.zarr.sg-tmp-{os.getppid()}-11111111"]
    for p in live:
        p.write_text("in use")
    unrelated = [tmp_path / f".other.zarr.sg-tmp-{dead_pid}-22222222",
                 tmp_path / ".out.zarr.sg-tmp-notapid-3", tmp_path / "keep.txt"]
    for p in unrelated:
        p.write_text("not ours")
    with staged(dst) as tmp:
        Path(tmp).write_text("new")
    assert not dead_dir.exists() and not dead_file.exists()
    assert all(p.exists() for p in live + unrelated)
    assert dst.read_text() == "new"


def test_stale_old_copy_of_a_dead_process(tmp_path: Path, dead_pid: int) -> None:
    """A process killed between moving the old destination aside and moving the new one in:
    the old one is put back (the destination is missing), or dropped (a newer one is there)."""
    dst = tmp_path / "out"
    aside = tmp_path / f".out.sg-old-{dead_pid}-12345678"
    aside.write_text("old")
    # put back first, so the destination exists
    with pytest.raises(DestinationExistsError), staged(dst):
        pass
    assert dst.read_text() == "old" and not aside.exists()
    aside.write_text("older")
    with staged(dst, overwrite=True) as tmp:
        Path(tmp).write_text("new")
    assert dst.read_text() == "new"
    assert os.listdir(tmp_path) == ["out"]


def test_stale_cleanup_in_a_missing_parent(tmp_path: Path) -> None:
    dst = tmp_path / "no" / "such" / "dir" / "out"
    with staged(dst) as tmp:
        Path(tmp).write_text("x")
    assert dst.read_text() == "x"


# ---------------------------------------------------------------------------------- remove_path
def test_remove_path(tmp_path: Path) -> None:
    remove_path(str(tmp_path / "missing"))
    f = tmp_path / "f"
    f.write_text("x")
    remove_path(str(f))
    assert not f.exists()
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "x").write_text("x")
    remove_path(str(d))
    assert not d.exists()
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep").write_text("x")
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    remove_path(str(link))
    assert not link.exists() and (target / "keep").exists()
    assert hidden(tmp_path) == []
