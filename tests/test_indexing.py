"""Unit tests of ``storegate.indexing`` against numpy's own indexing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from storegate.errors import IndexOutOfRangeError, InvalidIndexError
from storegate.indexing import count, is_torch_tensor, normalize, split_over, to_numpy_index


def check_canonical(idx, length: int) -> None:
    """What a backend may receive: int >= 0, clipped slice with step >= 1, 1-D int64 array."""
    if isinstance(idx, int):
        assert not isinstance(idx, bool) and 0 <= idx < length
    elif isinstance(idx, slice):
        assert isinstance(idx.start, int) and isinstance(idx.stop, int)
        assert isinstance(idx.step, int) and idx.step >= 1
        assert 0 <= idx.start <= idx.stop <= length
    else:
        assert isinstance(idx, np.ndarray) and idx.ndim == 1 and idx.dtype == np.int64
        assert ((idx >= 0) & (idx < length)).all()


def numpy_reference(index, length: int):
    """What numpy gives for the same index, with multiml's conventions applied first."""
    a = np.arange(length)
    if isinstance(index, int | np.integer) and int(index) == -1:
        return a  # multiml: -1 means every row
    if isinstance(index, tuple):
        return a[slice(*index)]  # multiml: (start, stop)
    if isinstance(index, list | np.ndarray) and len(index) == 0:
        return a[np.array([], dtype=np.intp)]  # np.asarray([]) is float64; still "no rows"
    return a[index]


SLICE_PARTS = [None, -12, -7, -3, -1, 0, 1, 3, 6, 7, 12]


@pytest.mark.parametrize("length", [0, 1, 2, 7])
def test_slices_match_numpy(length):
    a = np.arange(length)
    for start, stop, step in itertools.product(SLICE_PARTS, SLICE_PARTS,
                                               [None, 1, 2, 3, -1, -2, -4]):
        sl = slice(start, stop, step)
        idx = normalize(sl, length)
        check_canonical(idx, length)
        np.testing.assert_array_equal(a[idx], a[sl], err_msg=repr(sl))
        assert count(idx, length) == len(a[sl])


@pytest.mark.parametrize(
    "index",
    [0, 3, 6, -2, -7, np.int64(4), np.int32(-3), np.uint8(5), np.array(2), np.array(-4)],
    ids=repr,
)
def test_ints_match_numpy(index):
    length = 7
    idx = normalize(index, length)
    check_canonical(idx, length)
    assert isinstance(idx, int)
    assert np.arange(length)[idx] == np.arange(length)[index]
    assert count(idx, length) == 1


def test_minus_one_means_all():
    assert normalize(-1, 5) == slice(0, 5, 1)
    assert normalize(np.int64(-1), 5) == slice(0, 5, 1)
    assert normalize(-1, 0) == slice(0, 0, 1)
    assert normalize(Ellipsis, 4) == slice(0, 4, 1)


@pytest.mark.parametrize(
    "index",
    [
        [0, 6, 3, 3],
        [-1, -7, 0],
        np.array([5, 1, 5]),
        np.array([-2, 2], dtype=np.int8),
        np.array([1, 2], dtype=np.uint64),
        [True, False, True, False, False, False, True],
        np.array([False] * 7),
        np.array([True] * 7),
        (1, 5),
        (-3, 7),
        (5, 2),
        (0, 100),
        [],
        np.array([], dtype=np.float64),
        np.array([], dtype=np.int32),
    ],
    ids=lambda i: repr(i)[:40],
)
def test_arrays_and_pairs_match_numpy(index):
    length = 7
    idx = normalize(index, length)
    check_canonical(idx, length)
    expected = numpy_reference(index, length)
    got = np.arange(length)[idx]
    np.testing.assert_array_equal(got, expected)
    assert count(idx, length) == len(expected)


def test_list_negative_one_is_a_row_not_all():
    # only a scalar -1 means "all rows"; inside a list it is the last row, as in numpy
    np.testing.assert_array_equal(normalize([-1], 4), [3])


def test_bool_list_and_mask_are_masks():
    np.testing.assert_array_equal(normalize([True, False, True], 3), [0, 2])
    np.testing.assert_array_equal(normalize(np.array([False, True, True]), 3), [1, 2])
    # a list of 0/1 ints is an index list, not a mask
    np.testing.assert_array_equal(normalize([1, 0, 1], 3), [1, 0, 1])


def test_repeats_and_order_kept():
    idx = normalize([3, 1, 3, 0], 4)
    assert idx.tolist() == [3, 1, 3, 0]


@pytest.mark.parametrize(
    ("index", "length"),
    [(7, 7), (-8, 7), (0, 0), ([0, 7], 7), (np.array([-8]), 7), (10**20, 7),
     (np.array([2**40]), 7), (np.array([2**63], dtype=np.uint64), 7)],
    ids=repr,
)
def test_out_of_range(index, length):
    with pytest.raises(IndexOutOfRangeError):
        normalize(index, length)


@pytest.mark.parametrize(
    "index",
    [1.5, np.float32(1), "1", b"1", None, True, np.True_, [1, "a"], [1.0, 2.0], [[0, 1]],
     np.zeros((2, 2), int), np.array([0.0, 1.0]), (1, 2, 3), (1.0, 2), (True, 3),
     slice(1.0, 3), slice(0, 3, 0), [True, False], object()],
    ids=lambda i: type(i).__name__ + ":" + repr(i)[:20],
)
def test_invalid(index):
    with pytest.raises(InvalidIndexError):
        normalize(index, 3)


def test_messages_name_the_index():
    with pytest.raises(IndexOutOfRangeError, match=r"index 9 is out of range for 4 rows"):
        normalize(9, 4)
    with pytest.raises(IndexOutOfRangeError, match=r"index -5 in \[0, -5\]"):
        normalize([0, -5], 4)
    with pytest.raises(InvalidIndexError, match="float"):
        normalize(2.5, 4)
    with pytest.raises(InvalidIndexError, match="length 2 does not match the 4 rows"):
        normalize(np.array([True, False]), 4)


def test_torch_detection_without_torch():
    assert not is_torch_tensor(np.arange(3))
    assert not is_torch_tensor([1])
    assert to_numpy_index(5) == 5


def test_torch_tensor_index():
    from sg_helpers import require

    torch = require("torch")
    np.testing.assert_array_equal(normalize(torch.tensor([2, 0]), 3), [2, 0])
    assert normalize(torch.tensor(1), 3) == 1
    np.testing.assert_array_equal(normalize(torch.tensor([True, False, True]), 3), [0, 2])


# ---------------------------------------------------------------------- split_over
def gather(sizes, idx):
    """Read through split_over and reassemble, the way the facade does for phase='all'."""
    parts = [np.arange(sum(sizes[:i]), sum(sizes[: i + 1])) for i in range(len(sizes))]
    pieces = split_over(idx, sizes)
    if isinstance(idx, int):
        assert len(pieces) == 1 and pieces[0][2] is None
        part, local, _ = pieces[0]
        assert isinstance(local, int)
        return parts[part][local]
    n = count(idx, sum(sizes))
    out = np.full(n, -1)
    for part, local, positions in pieces:
        assert sizes[part] > 0
        check_canonical(local, sizes[part])
        if positions is None:
            assert len(pieces) == 1
            out[:] = parts[part][local]
        else:
            out[positions] = parts[part][local]
    return out


SIZES = [[5], [3, 4], [3, 0, 4], [0, 0, 6], [2, 2, 2], [1, 1, 1], [0, 5, 0], [6, 0, 0]]


@pytest.mark.parametrize("sizes", SIZES, ids=str)
def test_split_over_slices(sizes):
    n = sum(sizes)
    a = np.arange(n)
    for start, stop, step in itertools.product([None, -4, 0, 1, 2, 5, 9],
                                               [None, -1, 0, 2, 4, 6, 9],
                                               [None, 1, 2, 3, -1, -2]):
        sl = slice(start, stop, step)
        idx = normalize(sl, n)
        np.testing.assert_array_equal(gather(sizes, idx), a[sl], err_msg=f"{sl} {sizes}")


@pytest.mark.parametrize("sizes", SIZES, ids=str)
def test_split_over_ints_and_arrays(sizes):
    n = sum(sizes)
    rng = np.random.default_rng(sum(sizes) * 7 + len(sizes))
    for i in range(n):
        assert gather(sizes, normalize(i, n)) == i
    for _ in range(20):
        rows = rng.integers(0, n, size=rng.integers(0, 12))
        np.testing.assert_array_equal(gather(sizes, normalize(rows, n)), rows)
    np.testing.assert_array_equal(gather(sizes, normalize([], n)), [])


def test_split_over_examples():
    assert split_over(slice(1, 5, 1), [3, 4]) == [
        (0, slice(1, 3, 1), slice(0, 2, None)),
        (1, slice(0, 2, 1), slice(2, 4, None)),
    ]
    # a selection inside one part is handed over as is (positions None)
    assert split_over(slice(4, 6, 1), [3, 4]) == [(1, slice(1, 3, 1), None)]
    assert split_over(3, [3, 0, 4]) == [(2, 0, None)]
    [(part, local, pos)] = split_over(np.array([6, 4]), [3, 4])
    assert part == 1 and local.tolist() == [3, 1] and pos is None
    pieces = split_over(np.array([5, 0, 6]), [3, 4])
    assert [(p, loc.tolist(), pos.tolist()) for p, loc, pos in pieces] == [
        (0, [0], [1]), (1, [2, 3], [0, 2])
    ]
