"""Node orders for locality (storegate.graph.ordering)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from storegate.errors import InvalidArgumentError, MissingDependencyError
from storegate.graph import csr_undirected, node_order, relabel


def shuffled_ring_lattice(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """A ring where node i links to i+1..i+k, with labels shuffled: local structure hidden."""
    base = np.arange(n)
    src = np.concatenate([base] * k)
    dst = np.concatenate([(base + j) % n for j in range(1, k + 1)])
    labels = np.random.default_rng(seed).permutation(n)
    return labels[src], labels[dst], labels


@pytest.mark.parametrize("method", ["bfs", "degree"])
def test_order_is_a_permutation(method: str) -> None:
    src, dst, _ = shuffled_ring_lattice(500, 3)
    perm = node_order(src, dst, 520, method)  # 20 isolated nodes too
    assert perm.dtype == np.int64 and np.array_equal(np.sort(perm), np.arange(520))


def test_bfs_restores_locality_of_a_shuffled_graph() -> None:
    src, dst, _ = shuffled_ring_lattice(2000, 4)
    before = np.abs(src - dst).mean()
    perm = node_order(src, dst, 2000, "bfs")
    new = relabel(perm, np.stack([src, dst]))
    after = np.abs(new[0] - new[1]).mean()
    assert after < before / 20, (before, after)


def test_bfs_visits_every_component() -> None:
    src = np.array([0, 2, 4])
    dst = np.array([1, 3, 5])
    perm = node_order(src, dst, 7, "bfs")
    assert sorted(perm.tolist()) == list(range(7))
    pos = np.argsort(perm)
    for a, b in zip(src, dst, strict=True):  # each edge's ends are neighbours in the order
        assert abs(pos[a] - pos[b]) == 1


def test_degree_order_puts_hubs_first() -> None:
    src = np.array([3, 3, 3, 1])
    dst = np.array([0, 1, 2, 2])
    assert node_order(src, dst, 4, "degree")[0] == 3


def test_relabel_round_trip() -> None:
    rng = np.random.default_rng(1)
    perm = rng.permutation(50).astype(np.int64)
    ei = rng.integers(0, 50, (2, 200))
    new = relabel(perm, ei)
    assert np.array_equal(perm[new], ei)


def test_csr_undirected() -> None:
    rowptr, col = csr_undirected(np.array([0, 1, 1]), np.array([1, 2, 1]), 3)
    assert rowptr.tolist() == [0, 1, 4, 5]
    assert sorted(col[rowptr[1]:rowptr[2]].tolist()) == [0, 1, 2]


def test_bad_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="method"):
        node_order(np.array([0]), np.array([1]), 2, "random")
    with pytest.raises(InvalidArgumentError, match="endpoints"):
        node_order(np.array([0]), np.array([5]), 2)
    with pytest.raises(InvalidArgumentError):
        csr_undirected(np.array([0, 1]), np.array([1]), 2)


@pytest.mark.skipif(importlib.util.find_spec("pymetis") is not None,
                    reason="pymetis is installed")
def test_metis_without_pymetis_says_how_to_install() -> None:
    with pytest.raises(MissingDependencyError, match="pip install pymetis"):
        node_order(np.array([0]), np.array([1]), 2, "metis")


@pytest.mark.skipif(importlib.util.find_spec("pymetis") is None,
                    reason="pymetis is not installed (optional)")
def test_metis_parts_are_contiguous() -> None:  # pragma: no cover - needs pymetis
    src, dst, _ = shuffled_ring_lattice(2000, 4)
    perm = node_order(src, dst, 2000, "metis", num_parts=4)
    assert np.array_equal(np.sort(perm), np.arange(2000))
