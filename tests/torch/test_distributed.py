"""Multi-process training under ``torch.distributed`` (gloo, CPU): real ranks launched by
``torchrun`` read disjoint shards of one shared zarr store (issue 11).

The launches run this file as the training script (``python -m torch.distributed.run ...
test_distributed.py worker CONFIG``): each rank initialises the group with
:func:`~storegate.torch.init_distributed` from torchrun's environment, opens the store
read-only with :func:`~storegate.torch.open_shared`, reads two epochs through
:func:`~storegate.torch.distributed_loader` (calling ``set_epoch``), proves the group is real
with an ``all_reduce`` and an ``all_gather``, and writes the rows it saw to a JSON file; the
tests below check those files.

* one ``--standalone`` launch of 2 ranks on a local store: modes ``'random'`` and ``'chunk'``,
  with 0 and 2 ``DataLoader`` worker processes (persistent ones too), an uneven row count with
  and without ``drop_last``, and ranks that disagree on the seed;
* two torchrun "nodes" (``--nnodes 2 --node-rank i``, static rendezvous on 127.0.0.1) reading
  one store on the local S3 server, credentials and endpoint through the environment (and
  once through ``storage_options``): the multi-node recipe of docs/torch.md in miniature;
* in-process: the helpers' single-process paths and their errors.

A hung rank cannot hang the suite: every rank's collectives time out after 60 s and the
launcher's process group is killed after ``LAUNCH_TIMEOUT`` seconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

LAUNCH_TIMEOUT = 240  # seconds for a whole torchrun launch (it takes 10-20 s here)
N_EVEN = 1000
N_ODD = 1001
CHUNK = 100  # rows per zarr chunk of the test stores
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                "ROLE_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


# ====================================================================================== the worker
def _mark_worker(out_dir: str, worker_id: int) -> None:
    """``worker_init_fn``: leave a file per DataLoader worker process (rank, pid)."""
    rank = os.environ.get("RANK", "?")
    Path(out_dir, f"worker-{rank}-{os.getpid()}").write_text(str(worker_id))


def _worker(config_path: str) -> int:
    """One rank of a launch (run by torchrun; see the module docstring)."""
    import functools

    import torch.distributed as dist

    from storegate.errors import InvalidArgumentError
    from storegate.torch import (
        StoreGateDataset,
        close_distributed,
        distributed_info,
        distributed_loader,
        init_distributed,
        is_main_process,
        open_shared,
    )

    cfg = json.loads(Path(config_path).read_text())
    rank, world = init_distributed("gloo", timeout=60)
    info = distributed_info()
    out: dict[str, Any] = {"rank": rank, "world_size": world, "info": list(info),
                           "main": is_main_process(), "pid": os.getpid(), "cases": {}}
    ds: Any = None
    for case in cfg["cases"]:
        sg = open_shared(case["url"], **case.get("open", {}))
        ds = StoreGateDataset(sg, "train", ("row", "x"))
        kwargs = dict(case.get("loader", {}))
        if kwargs.get("num_workers"):
            kwargs["worker_init_fn"] = functools.partial(_mark_worker, cfg["out"])
        loader = distributed_loader(ds, case["batch_size"], seed=17, **kwargs)
        epochs = []
        for epoch in range(2):
            loader.set_epoch(epoch)
            ids: list[int] = []
            batches = 0
            fast_path = rows_match = True
            for row, x in loader:
                # the batched fast path: __getitems__ returns collated tensors
                fast_path &= isinstance(row, torch.Tensor) and isinstance(x, torch.Tensor)
                rows_match &= bool(torch.equal(x[:, 0], row.to(x.dtype)))
                ids.extend(row.tolist())
                batches += 1
            seen = torch.tensor([len(ids)], dtype=torch.int64)
            dist.all_reduce(seen)  # rows seen by all ranks this epoch
            mine = torch.tensor(ids, dtype=torch.int64)
            gathered = [torch.empty_like(mine) for _ in range(world)]
            dist.all_gather(gathered, mine)  # equal lengths: DistributedSampler's contract
            epochs.append({"ids": ids, "batches": batches, "fast_path": fast_path,
                           "rows_match": rows_match, "all_reduce": int(seen),
                           "all_gather": [g.tolist() for g in gathered],
                           "sampler_epoch": loader.sampler.epoch})
        out["cases"][case["name"]] = {"epochs": epochs, "len": len(loader),
                                      "sampler": type(loader.sampler).__name__,
                                      "batch_sampler_is_sampler":
                                          loader.batch_sampler.sampler is loader.sampler}
        sg.close()
    if cfg.get("mismatch") and ds is not None:
        try:  # rank 0 and rank 1 pass different seeds: every rank must refuse
            distributed_loader(ds, 10, seed=rank)
        except InvalidArgumentError as err:
            out["mismatch"] = str(err)
    dist.barrier()
    Path(cfg["out"], f"rank{rank}.json").write_text(json.dumps(out))
    close_distributed()
    return 0


# ====================================================================================== launching
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


def _run(commands: list[list[str]], env: dict[str, str], cwd: Path) -> None:
    """Run the launchers together; kill their process groups if they outlive the timeout."""
    procs = [subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
             for cmd in commands]
    outputs: list[str] = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=LAUNCH_TIMEOUT)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for p in procs:
            p.communicate()
        pytest.fail(f"a torchrun launch did not finish within {LAUNCH_TIMEOUT} s (killed)")
    for p, text in zip(procs, outputs, strict=True):
        assert p.returncode == 0, f"torchrun exited with {p.returncode}:\n{text[-6000:]}"


def _torchrun(*args: str) -> list[str]:
    """``torchrun --max-restarts 0 ARGS`` (ARGS end with this file and the worker's)."""
    return [sys.executable, "-m", "torch.distributed.run", "--max-restarts", "0", *args]


def _launch_standalone(cfg: dict[str, Any], tmp: Path) -> dict[int, dict[str, Any]]:
    cfg_path = tmp / "config.json"
    cfg_path.write_text(json.dumps(cfg))
    cmd = _torchrun("--standalone", "--nnodes", "1", "--nproc-per-node", "2",
                    __file__, "worker", str(cfg_path))
    _run([cmd], _child_env(), tmp)
    return _results(Path(cfg["out"]))


def _launch_two_nodes(cfg: dict[str, Any], tmp: Path,
                      env: dict[str, str]) -> dict[int, dict[str, Any]]:
    """Two torchrun agents, one rank each: node 0 and node 1 of a static rendezvous."""
    cfg_path = tmp / "config.json"
    cfg_path.write_text(json.dumps(cfg))
    port = str(_free_port())
    cmds = [_torchrun("--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node),
                      "--master-addr", "127.0.0.1", "--master-port", port,
                      __file__, "worker", str(cfg_path))
            for node in (0, 1)]
    _run(cmds, _child_env(env), tmp)
    return _results(Path(cfg["out"]))


def _results(out: Path) -> dict[int, dict[str, Any]]:
    got = {int(p.stem[4:]): json.loads(p.read_text()) for p in out.glob("rank*.json")}
    assert sorted(got) == [0, 1], f"result files: {sorted(got)}"
    return got


def _make_store(location: str, n: int, storage_options: dict[str, Any] | None = None) -> None:
    from storegate import StoreGate

    args: dict[str, Any] = {"output_dir": location, "chunk": CHUNK}
    if storage_options:
        args["storage_options"] = storage_options
    sg = StoreGate("zarr", args, data_id="d")
    rows = np.arange(n, dtype=np.int64)
    sg.add_data("row", rows, phase="train")
    sg.add_data("x", np.stack([rows, -rows, rows % 7], axis=1).astype(np.float64),
                phase="train")
    sg.compile()
    sg.close()


# ====================================================================================== checks
def _epochs(results: dict[int, dict[str, Any]], case: str) -> list[list[list[int]]]:
    """``[epoch][rank] -> ids``."""
    return [[results[r]["cases"][case]["epochs"][e]["ids"] for r in (0, 1)] for e in (0, 1)]


def _check_exact_cover(results: dict[int, dict[str, Any]], case: str, n: int) -> None:
    """The acceptance criteria: per epoch the ranks' rows are disjoint and together every row
    exactly once; each rank's shard differs between the epochs."""
    epochs = _epochs(results, case)
    for ranks in epochs:
        a, b = ranks
        assert len(a) == len(b) == n // 2
        assert not set(a) & set(b)
        assert sorted(a + b) == list(range(n))
    for r in (0, 1):
        assert set(epochs[0][r]) != set(epochs[1][r]), f"rank {r}: the same shard twice"
        assert epochs[0][r] != epochs[1][r]
    for r in (0, 1):
        c = results[r]["cases"][case]
        assert c["sampler"] == "ShardedSampler" and c["batch_sampler_is_sampler"]
        for e, ep in enumerate(c["epochs"]):
            assert ep["fast_path"] and ep["rows_match"]
            assert ep["sampler_epoch"] == e
            assert ep["all_reduce"] == n  # summed over the two ranks through gloo
            assert ep["all_gather"] == epochs[e]  # what the other rank reported, through gloo
    assert results[0]["cases"][case]["len"] == results[1]["cases"][case]["len"]


def _chunks_of(ids: list[int]) -> Counter[int]:
    return Counter(i // CHUNK for i in ids)


# ====================================================================================== local store
LOCAL_CASES: list[dict[str, Any]] = [
    {"name": "random", "store": "even", "batch_size": 64, "loader": {"mode": "random"}},
    {"name": "random-workers", "store": "even", "batch_size": 64,
     "loader": {"mode": "random", "num_workers": 2, "persistent_workers": True}},
    {"name": "chunk", "store": "even", "batch_size": 50,
     "loader": {"mode": "chunk", "window": 1}},
    {"name": "chunk-workers", "store": "even", "batch_size": 64,
     "loader": {"mode": "chunk", "num_workers": 2}},
    {"name": "uneven-padded", "store": "odd", "batch_size": 64, "loader": {"mode": "random"}},
    {"name": "uneven-drop-last", "store": "odd", "batch_size": 64,
     "loader": {"mode": "chunk", "drop_last": True}},
]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, dict[str, Any]]]:
    """One torchrun launch of 2 ranks running every case of ``LOCAL_CASES``."""
    tmp = tmp_path_factory.mktemp("dist")
    stores = {"even": str(tmp / "even.zarr"), "odd": str(tmp / "odd.zarr")}
    _make_store(stores["even"], N_EVEN)
    _make_store(stores["odd"], N_ODD)
    out = tmp / "out"
    out.mkdir()
    cases = [{**c, "url": stores[c["store"]]} for c in LOCAL_CASES]
    results = _launch_standalone({"out": str(out), "cases": cases, "mismatch": True}, tmp)
    results[-1] = {"workers": sorted(p.name for p in out.glob("worker-*"))}
    yield results


def test_both_ranks_joined_one_gloo_group(local_run: dict[int, dict[str, Any]]) -> None:
    for r in (0, 1):
        got = local_run[r]
        assert (got["rank"], got["world_size"]) == (r, 2)
        assert got["info"] == [r, 2, r, True]  # LOCAL_RANK from torchrun
        assert got["main"] is (r == 0)
    assert local_run[0]["pid"] != local_run[1]["pid"]


@pytest.mark.parametrize("case", ["random", "random-workers", "chunk", "chunk-workers"])
def test_ranks_read_disjoint_shards_covering_every_row_each_epoch(
        local_run: dict[int, dict[str, Any]], case: str) -> None:
    _check_exact_cover(local_run, case, N_EVEN)


def test_random_mode_gives_distributed_samplers_shards(
        local_run: dict[int, dict[str, Any]]) -> None:
    """mode='random' is torch's DistributedSampler, row for row, on every rank and epoch."""
    from torch.utils.data import DistributedSampler

    for r in (0, 1):
        ref = DistributedSampler(range(N_EVEN), num_replicas=2, rank=r, shuffle=True, seed=17)
        for e in (0, 1):
            ref.set_epoch(e)
            for case in ("random", "random-workers"):
                assert local_run[r]["cases"][case]["epochs"][e]["ids"] == list(ref)


def test_chunk_mode_gives_each_rank_whole_chunks(local_run: dict[int, dict[str, Any]]) -> None:
    """window=1: each rank's 500 rows are 5 whole chunks of 100 rows, different per epoch."""
    for e in (0, 1):
        chunks = [_chunks_of(ids) for ids in _epochs(local_run, "chunk")[e]]
        for c in chunks:
            assert len(c) == N_EVEN // CHUNK // 2 and set(c.values()) == {CHUNK}
        assert not set(chunks[0]) & set(chunks[1])
        # each batch of 50 rows comes from a single chunk
        ids = local_run[0]["cases"]["chunk"]["epochs"][e]["ids"]
        assert all(len(_chunks_of(ids[i:i + 50])) == 1 for i in range(0, len(ids), 50))


def test_dataloader_workers_were_separate_processes(
        local_run: dict[int, dict[str, Any]]) -> None:
    workers = local_run[-1]["workers"]
    pids = {(w.split("-")[1], w.split("-")[2]) for w in workers}
    rank_pids = {str(local_run[r]["pid"]) for r in (0, 1)}
    for r in ("0", "1"):
        mine = {pid for rank, pid in pids if rank == r}
        # 2 persistent workers once, 2 workers per epoch of the other case: at least 4 pids
        assert len(mine) >= 4, workers
        assert not mine & rank_pids


def test_uneven_rows_are_padded_like_distributed_sampler(
        local_run: dict[int, dict[str, Any]]) -> None:
    """1,001 rows on 2 ranks, drop_last=False: 501 rows each; the order is padded with its
    first row, so exactly one row is read twice per epoch and every row at least once."""
    for a, b in _epochs(local_run, "uneven-padded"):
        assert len(a) == len(b) == 501
        counts = Counter(a + b)
        assert set(counts) == set(range(N_ODD))
        assert sorted(counts.values()).count(2) == 1 and max(counts.values()) == 2
    for r in (0, 1):
        assert [ep["all_reduce"] for ep in
                local_run[r]["cases"]["uneven-padded"]["epochs"]] == [1002, 1002]


def test_uneven_rows_with_drop_last_never_repeat(local_run: dict[int, dict[str, Any]]) -> None:
    """1,001 rows on 2 ranks, drop_last=True: 500 rows each, none twice, one row left out."""
    for a, b in _epochs(local_run, "uneven-drop-last"):
        assert len(a) == len(b) == 500
        assert not set(a) & set(b)
        assert len(set(a)) == 500 and len(set(b)) == 500
        assert len(set(range(N_ODD)) - set(a) - set(b)) == 1
    assert (local_run[0]["cases"]["uneven-drop-last"]["len"]
            == local_run[1]["cases"]["uneven-drop-last"]["len"] == 8)


def test_ranks_that_disagree_on_the_seed_fail_together(
        local_run: dict[int, dict[str, Any]]) -> None:
    for r in (0, 1):
        msg = local_run[r].get("mismatch", "")
        assert "disagree on seed" in msg and "[0, 1]" in msg


# ====================================================================================== S3, 2 nodes
def test_two_nodes_read_one_store_on_s3(local_s3: Any, s3_url: str, tmp_path: Path) -> None:
    """The multi-node recipe in miniature: two torchrun agents (node 0 and node 1, one rank
    each, static rendezvous) read one store on the S3 server. Endpoint and credentials reach
    the ranks through the environment (and for one case through storage_options)."""
    from storegate.testing.s3 import CREDENTIALS

    url = s3_url + "/jets.zarr"
    _make_store(url, N_EVEN, local_s3.storage_options)
    out = tmp_path / "out"
    out.mkdir()
    cases = [
        {"name": "chunk-workers", "url": url, "batch_size": 100,
         "loader": {"mode": "chunk", "num_workers": 2}},
        {"name": "random", "url": url, "batch_size": 128, "loader": {"mode": "random"}},
        {"name": "options", "url": url, "batch_size": 128, "loader": {"mode": "chunk"},
         "open": {"storage_options": local_s3.storage_options}},
    ]
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": local_s3.endpoint_url}
    results = _launch_two_nodes({"out": str(out), "cases": cases}, tmp_path, env)
    for r in (0, 1):
        assert (results[r]["rank"], results[r]["world_size"]) == (r, 2)
        assert results[r]["info"][2] == 0  # one rank per node: local rank 0 on both
    for case in ("chunk-workers", "random", "options"):
        _check_exact_cover(results, case, N_EVEN)
    assert len(list(out.glob("worker-*"))) >= 8  # 2 ranks x 2 workers x 2 epochs


# ====================================================================================== in-process
@pytest.fixture
def no_group(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process without torchrun's environment or a process group; the group is destroyed
    afterwards whatever the test did."""
    import torch.distributed as dist

    for k in TORCHRUN_ENV:
        monkeypatch.delenv(k, raising=False)
    assert not dist.is_initialized()
    try:
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.fixture
def dataset() -> Any:
    from storegate import StoreGate
    from storegate.torch import StoreGateDataset

    sg = StoreGate("numpy", data_id="d")
    sg.add_data("row", np.arange(30), phase="train")
    return StoreGateDataset(sg, "train", "row")


def test_init_without_environment_is_a_one_process_group(no_group: None,
                                                         dataset: Any) -> None:
    import torch.distributed as dist

    from storegate.torch import (
        close_distributed,
        distributed_info,
        distributed_loader,
        init_distributed,
    )

    assert init_distributed(timeout=30) == (0, 1)
    assert dist.is_initialized() and dist.get_backend() == "gloo"
    assert init_distributed("nccl") == (0, 1)  # already initialised: nothing is done
    t = torch.tensor([3])
    dist.all_reduce(t)
    assert int(t) == 3
    assert distributed_info() == (0, 1, 0, True)
    loader = distributed_loader(dataset, 8, seed=1)
    loader.set_epoch(2)
    assert loader.epoch == loader.sampler.epoch == 2
    assert sorted(torch.cat(list(loader)).tolist()) == list(range(30))
    close_distributed()
    assert not dist.is_initialized()
    close_distributed()  # idempotent


@pytest.mark.parametrize("how", ["env", "tcp"])
def test_init_world_size_one_through_a_real_rendezvous(no_group: None,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       how: str) -> None:
    import torch.distributed as dist

    from storegate.torch import close_distributed, distributed_info, init_distributed

    port = _free_port()
    if how == "env":
        for k, v in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
                     "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
            monkeypatch.setenv(k, v)
        assert init_distributed(timeout=30) == (0, 1)
    else:
        assert init_distributed(init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1,
                                timeout=30) == (0, 1)
    assert distributed_info().initialized
    t = torch.tensor([5])
    dist.all_reduce(t)
    assert int(t) == 5
    close_distributed()


@pytest.mark.parametrize("env, kwargs, match", [
    ({"RANK": "0"}, {}, "WORLD_SIZE is not set"),
    ({"WORLD_SIZE": "2"}, {}, "RANK is not set"),
    ({"RANK": "0", "WORLD_SIZE": "2"}, {}, "MASTER_ADDR and MASTER_PORT are not set"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1"}, {}, "MASTER_PORT is not"),
    ({"RANK": "zero", "WORLD_SIZE": "2"}, {}, "RANK='zero' is not an integer"),
    ({"RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, {},
     "rank 2 is not in"),
    ({"RANK": "0", "WORLD_SIZE": "0"}, {}, "rank 0 is not in"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "x"}, {},
     "MASTER_PORT='x'"),
    ({}, {"init_method": "tcp://127.0.0.1:1"}, "needs rank= and world_size="),
    ({}, {"init_method": "127.0.0.1:1", "rank": 0, "world_size": 1}, "must be a URL"),
    ({}, {"init_method": "tcp://127.0.0.1:1", "rank": 1, "world_size": 1}, "rank 1 is not"),
    ({}, {"backend": "glooo"}, "unknown torch.distributed backend 'glooo'"),
    ({}, {"backend": ""}, "backend must be"),
    ({}, {"timeout": 0}, "timeout must be positive"),
    ({}, {"timeout": "60"}, "timeout must be seconds"),
])
def test_init_errors_say_what_to_set(no_group: None, monkeypatch: pytest.MonkeyPatch,
                                     env: dict[str, str], kwargs: dict[str, Any],
                                     match: str) -> None:
    import torch.distributed as dist

    from storegate.errors import InvalidArgumentError
    from storegate.torch import init_distributed

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(InvalidArgumentError, match=match):
        init_distributed(**kwargs)
    assert not dist.is_initialized()


def test_a_failed_rendezvous_keeps_torchs_error_with_a_note(no_group: None) -> None:
    """Rank 1 of 2 whose master never answers: torch's own error after the timeout, plus a
    note saying what was tried."""
    from storegate.errors import StoregateError
    from storegate.torch import init_distributed

    port = _free_port()  # nobody listens there
    with pytest.raises(RuntimeError) as info:  # torch's DistStoreError, a RuntimeError
        init_distributed(init_method=f"tcp://127.0.0.1:{port}", rank=1, world_size=2,
                         timeout=2)
    assert not isinstance(info.value, StoregateError)
    assert any("storegate.torch.init_distributed" in n and "world_size=2" in n
               for n in getattr(info.value, "__notes__", []))


def test_distributed_info_reads_torchruns_environment(no_group: None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from storegate.torch import distributed_info, is_main_process

    assert distributed_info() == (0, 1, 0, False) and is_main_process()
    for k, v in {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(k, v)
    assert distributed_info() == (3, 4, 1, False)
    assert not is_main_process()


def test_loader_over_explicit_ranks_matches_distributed_sampler(dataset: Any) -> None:
    """Without a process group (num_replicas/rank given): the shards, the epochs, and the
    sampler reachable from the loader, its batch sampler and set_epoch."""
    from torch.utils.data import DistributedSampler

    from storegate.torch import ShardedSampler, distributed_loader

    for r in (0, 1, 2):
        loader = distributed_loader(dataset, 4, num_replicas=3, rank=r, seed=5)
        assert isinstance(loader.sampler, ShardedSampler)
        assert loader.batch_sampler.sampler is loader.sampler is loader.shard_sampler
        ref = DistributedSampler(range(30), num_replicas=3, rank=r, seed=5)
        for epoch in (0, 1):
            loader.set_epoch(epoch)
            ref.set_epoch(epoch)
            batches = list(loader)
            assert all(isinstance(b, torch.Tensor) for b in batches)  # one read per batch
            assert torch.cat(batches).tolist() == list(ref)
        assert len(loader) == 3  # 10 rows in batches of 4


def test_loader_options_reach_the_sampler_and_the_dataloader(dataset: Any) -> None:
    from storegate.torch import distributed_loader

    loader = distributed_loader(dataset, 4, num_replicas=4, rank=3, drop_last=True,
                                drop_last_batch=True, mode="chunk", chunk_rows=5, window=2,
                                shuffle=False)
    s = loader.sampler
    assert (s.num_replicas, s.rank, s.drop_last, s.mode, s.chunk_rows, s.window) == (
        4, 3, True, "chunk", 5, 2)
    assert len(s) == 7 and loader.drop_last and len(loader) == 1
    assert torch.cat(list(loader)).tolist() == [3, 7, 11, 15]
    listed = distributed_loader(dataset, 4, num_replicas=1, rank=0, collate_fn=list)
    assert isinstance(next(iter(listed)), list)  # the caller's collate_fn wins


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 0}, "batch_size must be a positive int"),
    ({"batch_size": True}, "batch_size must be a positive int"),
    ({"sampler": None}, "sets the DataLoader's 'sampler'"),
    ({"batch_sampler": None}, "sets the DataLoader's 'batch_sampler'"),
    ({"num_workers": -1}, "num_workers must be"),
    ({"seed": 1.5}, "seed must be an int"),
    ({"shuffle": 1}, "shuffle must be True or False"),
    ({"mode": "sequential"}, "mode='sequential'"),
    ({"rank": 2}, "rank 2 is not in"),
])
def test_loader_errors(dataset: Any, kwargs: dict[str, Any], match: str) -> None:
    from storegate.errors import InvalidArgumentError
    from storegate.torch import distributed_loader

    args = {"batch_size": 4, "num_replicas": 2, "rank": 0, **kwargs}
    with pytest.raises(InvalidArgumentError, match=match):
        distributed_loader(dataset, **args)


def test_loader_without_a_group_says_to_initialise(no_group: None, dataset: Any) -> None:
    from storegate.errors import InvalidArgumentError
    from storegate.torch import distributed_loader

    with pytest.raises(InvalidArgumentError, match="init_distributed"):
        distributed_loader(dataset, 4)


def test_open_shared_is_read_only(tmp_path: Path) -> None:
    from storegate.errors import InvalidArgumentError, ReadOnlyError
    from storegate.torch import open_shared

    path = tmp_path / "s.zarr"
    _make_store(str(path), 10)
    a, b = open_shared(path), open_shared(str(path), data_id="d", cache_bytes=1 << 20)
    assert a["train"]["row"][[9, 0]].tolist() == b["train"]["row"][[9, 0]].tolist() == [9, 0]
    with pytest.raises(ReadOnlyError):
        a.add_data("new", np.arange(10), phase="train")
    with pytest.raises(InvalidArgumentError, match="read-only"):
        open_shared(path, mode="a")
    with pytest.raises(InvalidArgumentError, match="storage_options must be a dict"):
        open_shared(path, storage_options="anon")  # type: ignore[arg-type]
    a.close()
    b.close()


# ====================================================================================== entry point
if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "worker":
        sys.exit(_worker(sys.argv[2]))
    sys.exit("usage: test_distributed.py worker CONFIG.json (run by torchrun)")
