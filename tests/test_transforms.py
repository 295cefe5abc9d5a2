"""Whole-var transforms (``astype``, ``onehot``, ``argmax``, ``shuffle``): streaming, crash
safety and transactions.

* kill -9 in the middle of ``astype`` / ``shuffle`` of a 200 MB zarr var, at named points (the
  child kills itself from inside a wrapped backend call) and at delays spread over the
  operation: the reopened store holds the var wholly old or wholly new;
* ``onehot`` / ``shuffle`` of a 1 GB zarr var in a child whose peak RSS grows < 300 MB;
* an exception anywhere in a transform leaves every old var intact and no temporary visible;
* ``shuffle(phase, seed)`` and ``add_data(..., shuffle=seed)`` permutation contracts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sg_helpers import assert_array_equal_exact, requires_zarr_backend, snapshot

from storegate import StoreGate, transforms
from storegate.errors import InvalidArgumentError, VarNotFoundError
from storegate.phases import PHASES
from storegate.transforms import TMP_PREFIX

MB = 1 << 20


# --------------------------------------------------------------------------- helpers
def _data_snapshot(sg: StoreGate) -> dict[str, Any]:
    """Var names, order, dtype and bytes of every var (not the compile attributes, which a
    failed transform may leave marked stale)."""
    snap = snapshot(sg)
    return {k: {p: v[p] for p in PHASES} if isinstance(v, dict) else v
            for k, v in snap.items()}


def _leftovers(sg: StoreGate) -> list[str]:
    """Temporaries visible anywhere: listed names, backend vars, directories on disk."""
    found: list[str] = []
    db = sg.db
    for p in PHASES:
        names = sg.get_var_names(p)
        found += [f"{p}/{n}" for n in names if n.startswith(".")]
        found += [f"{p}/{TMP_PREFIX}{n} (has_var)" for n in names
                  if db.has_var("d", p, TMP_PREFIX + n)]
        location = getattr(db, "location", None)
        if location is not None:
            phase_dir = Path(location) / "d" / p
            if phase_dir.is_dir():
                found += [f"{p}/{c} (dir)" for c in os.listdir(phase_dir)
                          if c.startswith(".sg-")]
    return found


def _spy_appends(monkeypatch: pytest.MonkeyPatch, sg: StoreGate) -> list[str]:
    """Record the var name of every append the backend receives."""
    calls: list[str] = []
    cls = type(sg.db)
    orig = cls.append

    def append(self: Any, data_id: str, phase: str, var: str, data: np.ndarray) -> None:
        calls.append(var)
        orig(self, data_id, phase, var, data)

    monkeypatch.setattr(cls, "append", append)
    return calls


def _fail_on_tmp_append(monkeypatch: pytest.MonkeyPatch, sg: StoreGate, nth: int) -> list[str]:
    """Make the ``nth`` append to a temporary var raise (a full disk, say)."""
    calls: list[str] = []
    cls = type(sg.db)
    orig = cls.append

    def append(self: Any, data_id: str, phase: str, var: str, data: np.ndarray) -> None:
        if var.startswith(TMP_PREFIX):
            calls.append(var)
            if len(calls) == nth:
                raise OSError(28, "No space left on device (injected)")
        orig(self, data_id, phase, var, data)

    monkeypatch.setattr(cls, "append", append)
    return calls


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Blocks of 64 bytes: every transform below runs over many blocks (and many buckets)."""
    monkeypatch.setattr(transforms, "BLOCK_BYTES", 64)
    return 64


# --------------------------------------------------------------------------- transactions
def _filled(sg: StoreGate) -> None:
    rng = np.random.default_rng(0)
    sg.add_data("x", rng.standard_normal((40, 3)).astype("f4"), phase="train")
    sg.add_data("y", rng.integers(0, 4, 40), phase="train")
    sg.add_data("p", rng.random((40, 4)), phase="train")
    sg.add_data("x", rng.standard_normal((9, 3)).astype("f4"), phase="valid")
    sg.add_data("y", rng.integers(0, 4, 9), phase="valid")
    sg.add_data("p", rng.random((9, 4)), phase="valid")
    sg.compile()


def test_onehot_bad_label_in_last_block_fails_before_writing(
    make_sg: Callable[..., StoreGate], monkeypatch: pytest.MonkeyPatch, small_blocks: int
) -> None:
    sg = make_sg()
    labels = np.zeros(100, dtype=np.int64)
    labels[-1] = 3  # only the last of many blocks is out of range
    sg.add_data("y", labels)
    sg.add_data("z", np.arange(100) % 3)
    sg.compile()
    before = _data_snapshot(sg)
    appends = _spy_appends(monkeypatch, sg)
    with pytest.raises(InvalidArgumentError, match=r"\[0, 3\].*outside \[0, 3\)"):
        sg.onehot(["z", "y"], 3)  # z is fine, y is not: nothing is converted
    assert appends == []
    assert _data_snapshot(sg) == before
    assert _leftovers(sg) == []
    labels[-1] = -1
    sg.update_data("y", labels)
    before = _data_snapshot(sg)
    with pytest.raises(ValueError, match="outside"):
        sg.onehot("y", 3)
    assert appends == [] and _data_snapshot(sg) == before
    sg.compile()


def test_transform_list_with_missing_later_var_changes_nothing(
    make_sg: Callable[..., StoreGate], monkeypatch: pytest.MonkeyPatch
) -> None:
    sg = make_sg()
    _filled(sg)
    before = _data_snapshot(sg)
    appends = _spy_appends(monkeypatch, sg)
    with pytest.raises(VarNotFoundError, match="nope"):
        sg.astype(["x", "nope"], "f8")
    with pytest.raises(VarNotFoundError, match="nope"):
        sg.astype(["x", "y", "nope"], "f8", phase="all")
    with pytest.raises(KeyError):
        sg.onehot(["y", "nope"], 4)
    with pytest.raises(KeyError):
        sg.argmax(["p", "nope"], axis=1)
    with pytest.raises(InvalidArgumentError):
        sg.argmax(["p", "x"], axis=2)  # valid for p, not for x
    assert appends == []
    assert _data_snapshot(sg) == before
    assert _leftovers(sg) == []


TRANSFORMS: dict[str, Callable[[StoreGate], None]] = {
    "astype": lambda sg: sg.astype("x", "f8"),
    "astype-all": lambda sg: sg.astype("x", "f8", phase="all"),
    "onehot": lambda sg: sg.onehot("y", 4),
    "argmax": lambda sg: sg.argmax("p", axis=1),
    "shuffle": lambda sg: sg.shuffle("train", seed=3),
    "shuffle-all": lambda sg: sg.shuffle("all", seed=3),
}


@pytest.mark.parametrize("nth", [1, 3, 13])
@pytest.mark.parametrize("op", sorted(TRANSFORMS))
def test_failure_while_writing_temporary_leaves_old_vars(
    make_sg: Callable[..., StoreGate],
    monkeypatch: pytest.MonkeyPatch,
    small_blocks: int,
    op: str,
    nth: int,
) -> None:
    """The nth block written to a temporary raises: every var (of every phase) is unchanged,
    including, for shuffle, the vars already rewritten before the failing one (rows stay
    aligned); no temporary is left; the gate still works afterwards."""
    sg = make_sg()
    _filled(sg)
    before = _data_snapshot(sg)
    calls = _fail_on_tmp_append(monkeypatch, sg, nth)
    with pytest.raises(OSError, match="injected"):
        TRANSFORMS[op](sg)
    assert len(calls) == nth  # the failure happened where intended
    assert _data_snapshot(sg) == before
    assert _leftovers(sg) == []
    sg.compile()
    monkeypatch.undo()
    TRANSFORMS[op](sg)  # and works once the disk has room again
    assert _leftovers(sg) == []


@requires_zarr_backend
@pytest.mark.parametrize("nth", [1, 2, 3, 4, 5])
def test_zarr_failure_during_the_swap_rolls_back_every_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nth: int
) -> None:
    """A shuffle swaps all vars of a phase in together; a failing directory move in the
    middle (1: moving x aside, ..., 4: moving the new y in) puts every old var back."""
    from storegate.backends import zarr_backend

    sg = StoreGate("zarr", {"output_dir": str(tmp_path / "s.zarr")}, data_id="d")
    sg.add_data("x", np.arange(30.0))
    sg.add_data("y", np.arange(30) * 10)
    sg.compile()
    before = _data_snapshot(sg)
    moves: list[tuple[str, str]] = []
    orig = zarr_backend._Files.move

    def move(self: Any, src: str, dst: str) -> None:
        moves.append((src, dst))
        if len(moves) == nth:
            raise OSError(5, "Input/output error (injected)")
        orig(self, src, dst)

    monkeypatch.setattr(zarr_backend._Files, "move", move)
    if nth <= 4:
        with pytest.raises(OSError, match="injected"):
            sg.shuffle("train", seed=1)
        assert _data_snapshot(sg) == before
    else:  # only four moves: the shuffle succeeds
        sg.shuffle("train", seed=1)
    monkeypatch.undo()
    assert _leftovers(sg) == []
    x, y = sg.get_data(["x", "y"])
    assert_array_equal_exact(y, (x * 10).astype(np.int64))
    reopened = StoreGate("zarr", {"output_dir": str(tmp_path / "s.zarr")}, data_id="d")
    assert _data_snapshot(reopened) == _data_snapshot(sg)
    assert _leftovers(reopened) == []


def test_failed_transform_then_reopen(
    make_sg: Callable[..., StoreGate],
    reopen: Callable[..., StoreGate],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sg = make_sg()
    _filled(sg)
    before = _data_snapshot(sg)
    _fail_on_tmp_append(monkeypatch, sg, 1)
    with pytest.raises(OSError):
        sg.astype("x", "f2")
    monkeypatch.undo()
    sg = reopen(sg)
    assert _data_snapshot(sg) == before
    assert _leftovers(sg) == []
    sg.compile()


# --------------------------------------------------------------------------- shuffle contracts
def _phase_data(n: int, offset: int = 0) -> dict[str, np.ndarray]:
    i = np.arange(offset, offset + n)
    return {
        "i": i.astype(np.int64),
        "x": np.stack([i, -i, 2 * i], axis=1).astype("f4"),
        "img": (i[:, None, None] % 97 + np.arange(6).reshape(1, 2, 3)).astype(np.int8),
        "w": (i * 0.5).astype("f8"),
    }


def _fill_phases(sg: StoreGate, sizes: dict[str, int]) -> dict[str, dict[str, np.ndarray]]:
    data = {}
    offset = 0
    for phase, n in sizes.items():
        data[phase] = _phase_data(n, offset)
        offset += 1000
        for var, arr in data[phase].items():
            sg.add_data(var, arr, phase=phase)
    sg.compile()
    return data


@pytest.mark.parametrize("block", ["default", "small"])
def test_shuffle_one_permutation_per_phase_from_seed(
    make_sg: Callable[..., StoreGate], monkeypatch: pytest.MonkeyPatch, block: str,
    tmp_path: Path,
) -> None:
    if block == "small":
        # 8-byte blocks: one row per block for `i`, many buckets in the two-pass path
        monkeypatch.setattr(transforms, "BLOCK_BYTES", 8)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    sg = make_sg()
    sizes = {"train": 300, "valid": 17, "test": 1}
    data = _fill_phases(sg, sizes)
    np.random.seed(1234)
    state = np.random.get_state()
    sg.shuffle("all", seed=42)
    after = np.random.get_state()
    assert all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
               for a, b in zip(state, after, strict=True))  # the global RNG is untouched
    for phase, n in sizes.items():
        perm = np.random.default_rng(42).permutation(n)
        for var, arr in data[phase].items():
            assert_array_equal_exact(sg.get_data(var, phase), arr[perm])
    assert sg.get_var_names("train") == ["i", "x", "img", "w"]
    assert _leftovers(sg) == []
    assert os.listdir(scratch) == []  # the two-pass scratch files are gone
    assert sg.get_metadata()["total_events"] == [300, 17, 1]


def test_shuffle_reproducible_and_seed_dependent(make_sg: Callable[..., StoreGate]) -> None:
    results = []
    for store, seed in (("a.zarr", 5), ("b.zarr", 5), ("c.zarr", 6)):
        sg = make_sg(store=store)
        _fill_phases(sg, {"train": 64})
        sg.shuffle("train", seed=seed)
        results.append(sg.get_data("i"))
    assert_array_equal_exact(results[0], results[1])
    assert not np.array_equal(results[0], results[2])
    assert sorted(results[2].tolist()) == list(range(64))


def test_shuffle_one_phase_only_and_twice(make_sg: Callable[..., StoreGate]) -> None:
    sg = make_sg()
    data = _fill_phases(sg, {"train": 50, "valid": 20})
    sg.shuffle("valid", seed=0)
    for var, arr in data["train"].items():
        assert_array_equal_exact(sg.get_data(var, "train"), arr)  # train untouched
    p1 = np.random.default_rng(0).permutation(20)
    sg.shuffle("valid", seed=0)  # a second shuffle composes with the first
    for var, arr in data["valid"].items():
        assert_array_equal_exact(sg.get_data(var, "valid"), arr[p1][p1])


def test_shuffle_empty_and_single_row_phases(make_sg: Callable[..., StoreGate],
                                             small_blocks: int) -> None:
    sg = make_sg()
    # vars with no rows (the facade skips empty row ranges, so through the backend)
    sg.db.create("d", "train", "x", (0, 3), np.dtype("f4"))
    sg.db.create("d", "train", "y", (0,), np.dtype("i8"))
    sg.add_data("x", np.ones((1, 3), "f4"), phase="valid")
    sg.add_data("y", np.array([7]), phase="valid")
    sg.compile()
    for phase in ("train", "valid", "test", "all"):
        sg.shuffle(phase, seed=1)
    assert_array_equal_exact(sg.get_data("x", "train"), np.zeros((0, 3), "f4"))
    assert_array_equal_exact(sg.get_data("y", "train"), np.zeros(0, np.int64))
    assert_array_equal_exact(sg.get_data("x", "valid"), np.ones((1, 3), "f4"))
    assert_array_equal_exact(sg.get_data("y", "valid"), np.array([7]))
    assert sg.get_var_names("test") == []
    assert sg.get_metadata()["total_events"] == [0, 1, 0]
    assert _leftovers(sg) == []


@pytest.mark.parametrize("seed", [-1, 1.5, "x"])
def test_shuffle_bad_seed_changes_nothing(make_sg: Callable[..., StoreGate], seed: Any) -> None:
    sg = make_sg()
    _fill_phases(sg, {"train": 10})
    before = _data_snapshot(sg)
    with pytest.raises(InvalidArgumentError, match="seed"):
        sg.shuffle("train", seed=seed)
    assert _data_snapshot(sg) == before


@requires_zarr_backend
def test_shuffle_removes_scratch_of_killed_shuffles_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_blocks: int
) -> None:
    """A shuffle killed in its two passes cannot delete its scratch directory; the next shuffle
    removes scratch directories whose process is gone, and leaves those of live ones."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_dir = scratch / f"storegate-shuffle-{int(dead.stdout)}-abc"
    live_dir = scratch / f"storegate-shuffle-{os.getppid()}-def"
    other = scratch / "unrelated-123"
    for d in (dead_dir, live_dir, other):
        d.mkdir()
        (d / "0.rows").write_bytes(b"x" * 100)
    sg = StoreGate("zarr", {"output_dir": str(tmp_path / "s.zarr")}, data_id="d")
    data = _fill_phases(sg, {"train": 20})
    sg.shuffle("train", seed=9)
    assert sorted(os.listdir(scratch)) == sorted([live_dir.name, other.name])
    perm = np.random.default_rng(9).permutation(20)
    assert_array_equal_exact(sg.get_data("x"), data["train"]["x"][perm])


def test_add_data_shuffle_depends_on_seed_and_length_only(
    make_sg: Callable[..., StoreGate]
) -> None:
    sg = make_sg()
    a = np.arange(30, dtype=np.int64)
    b = np.stack([a * 10, a * 100], axis=1)
    a0, b0 = a.copy(), b.copy()
    np.random.seed(7)
    state = np.random.get_state()
    sg.add_data("a", a, phase=(0.5, 0.3, 0.2), shuffle=11)
    sg.add_data("b", b, phase=(0.5, 0.3, 0.2), shuffle=11)  # a separate call, same seed
    assert np.array_equal(np.random.get_state()[1], state[1])
    assert_array_equal_exact(a, a0)  # the caller's arrays are never permuted
    assert_array_equal_exact(b, b0)
    perm = np.random.RandomState(11).permutation(30)
    got_a = np.concatenate([sg.get_data("a", p) for p in PHASES])
    got_b = np.concatenate([sg.get_data("b", p) for p in PHASES])
    assert_array_equal_exact(got_a, a0[perm])
    assert_array_equal_exact(got_b, b0[perm])  # row-aligned with a
    assert [len(sg.get_data("a", p)) for p in PHASES] == [15, 9, 6]
    # True means seed 1; False and 0 keep the order; a tuple of names shares one permutation
    sg2 = make_sg(data_id="e", store="e.zarr")
    sg2.add_data("t", a, shuffle=True)
    sg2.add_data("f", a, shuffle=False)
    sg2.add_data("z", a, shuffle=0)
    sg2.add_data(("c0", "c1"), b, shuffle=1)
    assert_array_equal_exact(sg2.get_data("t"), a0[np.random.RandomState(1).permutation(30)])
    assert_array_equal_exact(sg2.get_data("f"), a0)
    assert_array_equal_exact(sg2.get_data("z"), a0)
    assert_array_equal_exact(sg2.get_data("c0"), sg2.get_data("t") * 10)
    assert_array_equal_exact(sg2.get_data("c1"), sg2.get_data("t") * 100)
    assert_array_equal_exact(a, a0)
    assert_array_equal_exact(b, b0)


# --------------------------------------------------------------------------- kill -9
KILL_CHILD = r"""
import os, signal, sys
from storegate import StoreGate
from storegate.backends import zarr_backend as zb

path, op, point = sys.argv[1:4]
kind, _, arg = point.partition(":")
seen = {"n": 0}

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def count(n):
    seen["n"] += 1
    if seen["n"] == n:
        die()

if kind == "append":  # after the n-th block appended to the temporary
    append = zb.ZarrBackend.append
    def wrapped(self, d, p, var, data):
        append(self, d, p, var, data)
        if var.startswith(".sg-tmp-"):
            count(int(arg))
    zb.ZarrBackend.append = wrapped
elif kind == "read":  # after the n-th block read from the old var (shuffle: pass 1)
    read = zb.ZarrBackend.read
    def wrapped(self, d, p, var, index):
        out = read(self, d, p, var, index)
        if var == "x":
            count(int(arg))
        return out
    zb.ZarrBackend.read = wrapped
elif kind == "rename":  # the temporary is complete, nothing swapped yet
    def wrapped(self, *args):
        die()
    zb.ZarrBackend.rename_many = wrapped
elif kind in ("move-before", "move-after"):  # around the n-th directory move of the swap
    move = zb._Files.move
    def wrapped(self, src, dst):
        if kind == "move-before":
            count(int(arg))
        move(self, src, dst)
        if kind == "move-after":
            count(int(arg))
    zb._Files.move = wrapped
elif kind == "remove":  # the old copy is about to go (into the journal, until the commit)
    remove = zb._Files.remove
    def wrapped(self, rel):
        if ".sg-old-" in rel:
            die()
        remove(self, rel)
    zb._Files.remove = wrapped
elif kind == "commit-half":  # committed; killed halfway through deleting the journal's copies
    from storegate.backends import journal as jn
    real_remove = jn._remove
    def wrapped(path):
        if (path.endswith(jn.JOURNAL_DIR) and os.path.isdir(path)
                and not os.path.exists(os.path.join(path, "index"))):
            files = sorted(os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs)
            for f in files[: len(files) // 2]:
                os.unlink(f)
            die()
        real_remove(path)
    jn._remove = wrapped

sg = StoreGate("zarr", {"output_dir": path}, data_id="d")
sg.get_var_names("train")
print("ready", flush=True)
if op == "astype":
    sg.astype("x", "f8")
else:
    sg.shuffle("train", seed=int(os.environ["SG_SEED"]))
print("done", flush=True)
"""

KILL_ROWS = 819_200  # x: 819,200 x 64 float32 = 200 MiB
KILL_SEED = 2024


@pytest.fixture(scope="module")
def kill_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A zarr store with one 200 MiB float32 var ``x`` in train (written in 16 MiB blocks), plus
    a small var in valid that no test touches."""
    path = tmp_path_factory.mktemp("kill") / "template.zarr"
    sg = StoreGate("zarr", {"output_dir": str(path)}, data_id="d")
    rng = np.random.default_rng(0)
    x = np.empty((KILL_ROWS, 64), dtype="f4")
    step = 16 * MB // (64 * 4)
    for start in range(0, KILL_ROWS, step):
        block = rng.standard_normal((min(step, KILL_ROWS - start), 64), dtype="f4")
        x[start : start + len(block)] = block
        sg.add_data("x", block, phase="train")
    sg.add_data("x", np.arange(12.0, dtype="f4").reshape(3, 4), phase="valid")
    sg.compile()
    sg.close()
    return path, x


def _same(sg: StoreGate, expected: np.ndarray) -> bool:
    """``x`` in train equals ``expected`` bit for bit (dtype and shape included)."""
    if sg.get_var_shapes("x", "train") != expected.shape[1:]:
        return False
    view = sg["train"]["x"]
    if len(view) != len(expected):
        return False
    step = 1 << 16
    for start in range(0, len(expected), step):
        got = view[start : start + step]
        want = expected[start : start + step]
        if got.dtype != want.dtype or not np.array_equal(got.view(np.uint8),
                                                         want.view(np.uint8)):
            return False
    return True


def _state(path: Path, old: np.ndarray, new: np.ndarray) -> str:
    """Open the store after a kill, read-only and then for writing; check that ``x`` is wholly
    old or wholly new (the same in both opens), that no temporary is visible or left on disk,
    and that ``compile()`` succeeds. Returns ``'old'`` or ``'new'``."""
    states = []
    for mode in ("r", "a"):
        sg = StoreGate("zarr", {"output_dir": str(path), "mode": mode}, data_id="d")
        assert sg.get_var_names("train") == ["x"]
        assert sg.get_var_names("valid") == ["x"]
        assert sg.get_var_names("test") == []
        if mode == "a":
            for phase in PHASES:
                phase_dir = path / "d" / phase
                assert [c for c in os.listdir(phase_dir) if c.startswith(".sg-")] == []
            sg.compile()
            assert sg.get_metadata()["total_events"] == [len(old), 3, 0]
        assert_array_equal_exact(sg.get_data("x", "valid"),
                                 np.arange(12.0, dtype="f4").reshape(3, 4))
        found = [name for name, exp in (("old", old), ("new", new)) if _same(sg, exp)]
        assert len(found) == 1, f"x is neither wholly old nor wholly new ({mode=})"
        states.append(found[0])
        sg.close()
    assert states[0] == states[1], states
    return states[0]


def _run_child(path: Path, op: str, point: str, scratch: Path,
               kill_after: float | None = None) -> tuple[int, float]:
    env = {**os.environ, "TMPDIR": str(scratch), "SG_SEED": str(KILL_SEED)}
    proc = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(path), op, point],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    if kill_after is not None:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"child failed ({proc.returncode}): {err}")
    return proc.returncode, elapsed


# (point, expected state) for each operation; the child kills itself at the point
KILL_POINTS = {
    "astype": [
        ("append:1", "old"),  # the temporary has one block
        ("append:7", "old"),
        ("rename", "old"),  # the temporary is complete
        ("move-before:1", "old"),
        ("move-after:1", "old"),  # old var moved aside, new not yet in: rolled back
        ("move-after:2", "old"),  # new var in, not committed: the journal rolls it back
        ("remove", "old"),
        ("commit-half", "new"),  # committed; killed while deleting the old copy
    ],
    "shuffle": [
        ("read:2", "old"),  # pass 1: distributing rows into buckets
        ("read:13", "old"),  # pass 1 done (13 blocks), before pass 2
        ("append:5", "old"),  # pass 2: assembling blocks
        ("move-after:1", "old"),
        ("move-after:2", "old"),
        ("commit-half", "new"),
    ],
}


@requires_zarr_backend
@pytest.mark.parametrize("op", ["astype", "shuffle"])
def test_kill_during_transform_leaves_var_wholly_old_or_new(
    kill_template: tuple[Path, np.ndarray], tmp_path: Path, op: str
) -> None:
    template, old = kill_template
    new = (old.astype("f8") if op == "astype"
           else old[np.random.default_rng(KILL_SEED).permutation(len(old))])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    outcomes: list[tuple[str, str]] = []

    def trial(point: str, kill_after: float | None = None) -> tuple[str, float]:
        path = tmp_path / f"s{len(outcomes)}.zarr"
        shutil.copytree(template, path)
        rc, elapsed = _run_child(path, op, point, scratch, kill_after)
        if kill_after is None and point != "none":
            assert rc == -signal.SIGKILL, f"the child never reached {point!r}"
        state = _state(path, old, new)
        outcomes.append((f"{point} after {kill_after}s" if kill_after else point, state))
        shutil.rmtree(path)
        return state, elapsed

    for point, expected in KILL_POINTS[op]:
        assert trial(point)[0] == expected, point
        if op == "shuffle":
            # a shuffle killed in its passes leaves its scratch; the next one removes it
            left = [n for n in os.listdir(scratch) if n.startswith("storegate-shuffle-")]
            assert len(left) == (1 if point.startswith(("read", "append")) else 0), left
    # a complete run: new, and (shuffle) it removes the scratch of the killed runs
    state, duration = trial("none")
    assert state == "new"
    assert os.listdir(scratch) == []
    for fraction in (0.15, 0.5, 0.85):  # kills at delays spread over the operation
        trial("none", kill_after=fraction * duration)
    assert {s for _, s in outcomes} == {"old", "new"}, outcomes


# --------------------------------------------------------------------------- memory
RSS_CHILD = r"""
import json, resource, sys
from storegate import StoreGate

path, op = sys.argv[1:3]
sg = StoreGate("zarr", {"output_dir": path}, data_id="d")
sg.get_var_names("train")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if op == "onehot":
    sg.onehot("y", 2)
else:
    sg.shuffle("train", seed=7)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"before_kib": before, "after_kib": after}))
print(f"{op}: peak RSS {before / 1024:.0f} -> {after / 1024:.0f} MB", file=sys.stderr)
"""

GB_ROWS_Y = (1 << 30) // (16 * 8)  # y: 8,388,608 x 16 int64 = 1 GiB
GB_ROWS_X = (1 << 30) // (64 * 4)  # x: 4,194,304 x 64 float32 = 1 GiB


def _labels(start: int, stop: int) -> np.ndarray:
    i = np.arange(start, stop, dtype=np.int64)[:, None]
    return (i + np.arange(16) // 3) % 2


# A child's ru_maxrss starts at its parent's peak (Linux carries the peak RSS over fork and
# exec), so a child of this (large) test process would report a baseline of hundreds of MB and
# hide any growth below it. The measuring process is therefore a grandchild, started by a small
# launcher, and its baseline is checked to be its own.
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def _rss_growth_mb(path: Path, op: str, tmp_path: Path) -> float:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", LAUNCHER, sys.executable, "-c", RSS_CHILD,
                          str(path), op], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    assert rss["before_kib"] < 250 * 1024, f"inherited baseline: {rss}"
    print(out.stderr.strip())
    return (rss["after_kib"] - rss["before_kib"]) / 1024


@requires_zarr_backend
def test_onehot_of_1gb_var_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "y.zarr"
    sg = StoreGate("zarr", {"output_dir": str(path)}, data_id="d")
    step = 16 * MB // (16 * 8)
    for start in range(0, GB_ROWS_Y, step):
        sg.add_data("y", _labels(start, min(GB_ROWS_Y, start + step)))
    sg.compile()
    sg.close()
    growth = _rss_growth_mb(path, "onehot", tmp_path)
    assert growth < 300, f"onehot of a 1 GiB var grew the peak RSS by {growth:.0f} MB"
    sg = StoreGate("zarr", {"output_dir": str(path), "mode": "r"}, data_id="d")
    assert sg.get_var_shapes("y") == (16, 2)
    view = sg["train"]["y"]
    assert len(view) == GB_ROWS_Y
    for start in (0, 1, 65_535, 1_000_003, GB_ROWS_Y - 3):
        got = view[start : start + 3]
        assert_array_equal_exact(got, np.identity(2)[_labels(start, start + 3)])
    assert [n for n in os.listdir(path / "d" / "train") if n.startswith(".sg-")] == []


@requires_zarr_backend
def test_shuffle_of_1gb_var_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "x.zarr"
    sg = StoreGate("zarr", {"output_dir": str(path)}, data_id="d")
    step = 16 * MB // (64 * 4)
    for start in range(0, GB_ROWS_X, step):
        i = np.arange(start, min(GB_ROWS_X, start + step), dtype="f4")
        sg.add_data("x", np.repeat(i[:, None], 64, axis=1))  # row i is 64 copies of i
    sg.compile()
    sg.close()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    growth = _rss_growth_mb(path, "shuffle", scratch)
    assert growth < 300, f"shuffle of a 1 GiB var grew the peak RSS by {growth:.0f} MB"
    assert os.listdir(scratch) == []
    perm = np.random.default_rng(7).permutation(GB_ROWS_X)
    sg = StoreGate("zarr", {"output_dir": str(path), "mode": "r"}, data_id="d")
    view = sg["train"]["x"]
    assert len(view) == GB_ROWS_X
    for start in range(0, GB_ROWS_X, step):  # every row, block by block
        got = view[start : start + step]
        assert got.dtype == np.float32
        assert np.array_equal(got[:, 0], perm[start : start + step].astype("f4"))
        assert (got == got[:, :1]).all()


@requires_zarr_backend
@pytest.mark.parametrize(("point", "expected"), [
    ("move-after:1", "old"),  # x moved aside
    ("move-after:2", "old"),  # x and y moved aside
    ("move-after:3", "old"),  # new x in, new y not yet: both rolled back
    ("move-after:4", "old"),  # both new vars in, not committed: rolled back
    ("remove", "old"),  # the old copies are going into the journal
    ("commit-half", "new"),  # committed; the journal's copies half deleted
])
def test_kill_during_multi_var_swap_keeps_rows_aligned(
    tmp_path: Path, point: str, expected: str
) -> None:
    """A shuffle swaps every var of the phase in as one unit: a kill between two vars' swaps
    leaves all of them old or all new (never x shuffled and y not)."""
    path = tmp_path / "s.zarr"
    sg = StoreGate("zarr", {"output_dir": str(path)}, data_id="d")
    x = np.arange(1000.0).reshape(500, 2)
    sg.add_data(("x", "y"), np.stack([x, x * 10], axis=1))
    sg.compile()
    sg.close()
    rc, _ = _run_child(path, "shuffle", point, tmp_path)
    assert rc == -signal.SIGKILL
    perm = np.random.default_rng(KILL_SEED).permutation(500)
    states = []
    for mode in ("r", "a"):
        sg = StoreGate("zarr", {"output_dir": str(path), "mode": mode}, data_id="d")
        assert sg.get_var_names() == ["x", "y"]
        got_x, got_y = sg.get_data(["x", "y"])
        assert_array_equal_exact(got_y, got_x * 10)  # rows aligned
        state = "old" if np.array_equal(got_x, x) else "new"
        assert_array_equal_exact(got_x, x if state == "old" else x[perm])
        states.append(state)
        sg.close()
    assert states == [expected, expected]
    assert [c for c in os.listdir(path / "d" / "train") if c.startswith(".sg-")] == []
