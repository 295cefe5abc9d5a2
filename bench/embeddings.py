"""Learnable embedding tables: gather + sparse update throughput of storegate's
``EmbeddingTable`` (numpy and zarr backends), through a ``PartitionBuffer`` along a BETA plan,
beside numpy and ``torch.nn.Embedding(sparse=True)`` in memory.

Dataset: one table of N x dim float32 (N = 1,048,576 x 128 by default: 512 MiB, plus 512 MiB of
Adagrad state), initialised ``normal(0, 1/sqrt(dim))`` with seed 0 (the same values on every
backend and in torch). The zarr table is a local directory (uncompressed, storegate's default
4 MiB chunks: 8,192 rows of 128 float32), in the page cache; it is written once and copied for
every case that changes it.

Cases
-----
* **step, random ids** (SGD and Adagrad): one step = gather the rows of B random ids
  (B = 4,096, duplicates allowed) and apply B gradient rows (the optimizer step; duplicates
  summed), rows/s = B / step time, the best of ``--repeat`` runs of ``--steps`` steps.
  In memory: numpy ``w[ids]`` + ``np.add.at`` (what a user writes first), numpy ``w[ids]`` +
  storegate's ``coalesce`` + a fancy write (the floor: the same arithmetic without the table),
  and ``nn.Embedding(sparse=True)`` + ``torch.optim.SGD`` / ``Adagrad`` (``out.backward(g)``,
  ``step()``, ``zero_grad()``): the library a user would otherwise use. storegate:
  ``EmbeddingTable.gather`` + ``apply_gradients`` on the numpy backend, on the zarr backend with
  random ids over the whole table (every step rewrites every 4 MiB chunk it touches: nearly all
  of them; ``--zarr-steps`` steps after one untimed step), and on zarr with ids inside one chunk;
  ``PartitionBuffer`` rows (ids drawn from the resident partitions, no swap); and (Adagrad) the
  ``StoreEmbedding`` module's forward + backward on the numpy table (its overhead over the raw
  calls).
* **epoch, BETA plan** (Adagrad): a DistMult link-prediction step on the gathered rows in torch:
  B positive edges (source, relation, destination) and B negatives shared by chunks of 256
  positives (the negative scores a ``(B/256, 256, 256)`` ``bmm``), logistic loss, backward, the
  table's sparse Adagrad step and torch Adagrad on 8 dense relation vectors. The epoch walks
  ``beta_plan(P, P/4)`` (P = 16 partitions, capacity 4: 35 states) with ``--steps-per-state``
  (8) steps per state; each edge's ends come from one of the state's edge buckets, negatives
  from its resident rows (the ids are drawn before the clock starts, the same for every row).
  Rows: the same steps on ``nn.Embedding(sparse=True)`` + ``torch.optim.Adagrad`` holding the
  whole table, on ``StoreEmbedding`` over the numpy-backend table, and on ``StoreEmbedding``
  over a ``PartitionBuffer`` of the zarr table, with prefetch (the default) and without. The
  buffer rows split the epoch into training steps and swaps (time inside ``buf.states(plan)``)
  and give the swap statistics: partitions read/written, I/O seconds of the background thread,
  seconds the training thread stalled for it, and the hidden fraction ``1 - stall / io``;
  "after the first state" leaves out the first state's load (read synchronously: nothing can
  hide it). ``flush`` (commit after the epoch: write-back of the resident partitions, rename of
  the working copy) is its own row.

torch runs with one intra-op thread (``--threads``): on this shared 2-core machine two threads
stall on each other whenever another process (or the buffer's I/O thread) takes a core, and a
step then varies 10x; with one thread the second core serves the I/O thread.

Checks: the buffered epochs (with and without prefetch) equal the epoch on the numpy-backend
table bit for bit (weights and Adagrad state). The per-step cases are compared with the numpy
floor after the same updates (``allclose`` on every row updated and 4,096 others). The epochs
on storegate and on torch agree statistically in float32 (no more than 1 % of the weights off
by more than 1e-3; the table shows the figures): torch sums a row's duplicate gradients in
another order, and Adagrad's step on a row whose summed gradient is near zero
(``lr * g / sqrt(s)``) turns that last-bit difference into a visible one, which the shared
relation vectors then spread. With ``--dtype float64`` the two epochs agree to ~1e-11.

Usage::

    python bench/embeddings.py            # full size (512 MiB table): about 2.5 minutes
    python bench/embeddings.py --quick    # a smoke run (CI): 65,536 x 64 (16 MiB), P = 8,
                                          # capacity 2, 4 steps per state: ~20 s
    python bench/embeddings.py --only epoch --dtype float64 --rows 262144   # torch == storegate
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fmt_ms, machine, versions
from storegate import StoreGate
from storegate.embeddings import (
    BufferStats,
    EmbeddingTable,
    PartitionBuffer,
    StoreEmbedding,
    beta_plan,
    coalesce,
    equal_offsets,
)

LR = 0.05
EPS = 1e-10
RELATIONS = 8
NEG_CHUNK = 256  # positives sharing one set of negatives (and negatives per chunk)
MiB = 1 << 20


@dataclass
class Row:
    case: str
    who: str
    rows_per_step: int
    seconds: float  # per step, or for the epoch
    steps: int = 1
    ref: str = ""  # key of the row this one is compared with
    key: str = ""
    note: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Rows gathered and updated per second."""
        return self.rows_per_step * self.steps / self.seconds if self.seconds > 0 else 0.0


class Bench:
    """The measurements of one run (see the module docstring)."""

    def __init__(self, args: argparse.Namespace, scratch: Path) -> None:
        self.a = args
        self.scratch = scratch
        self.n, self.dim, self.b = int(args.rows), int(args.dim), int(args.batch)
        self.rows: list[Row] = []
        self.rng = np.random.default_rng(1)
        self.pristine = scratch / "pristine.zarr"
        self.chunk_rows = 0
        self.dtype = np.dtype(args.dtype)
        self.w0 = np.empty((0, self.dim), self.dtype)
        self.nbytes = self.n * self.dim * self.dtype.itemsize
        self.fw = self.fs = self.w0  # the floor's arrays (allocated once)
        self.np_sg: Any = None
        self.direct = scratch / "direct.zarr"
        self.t0 = time.perf_counter()
        self.load = os.getloadavg()[0]

    # ------------------------------------------------------------------ helpers
    def add(self, row: Row) -> None:
        self.rows.append(row)
        if not row.rows_per_step:
            print(f"  {row.case:<26} {row.who:<62} {fmt_ms(row.seconds * 1e3):>9}       "
                  f"{'':>17}  {row.note} [{time.perf_counter() - self.t0:.0f} s]", flush=True)
            return
        per = row.seconds / row.steps
        print(f"  {row.case:<26} {row.who:<62} {fmt_ms(per * 1e3):>9}/step "
              f"{row.rate / 1e6:8.2f} M rows/s  {row.note} [{time.perf_counter() - self.t0:.0f} s]",
              flush=True)

    def best(self, fn: Callable[[int], object], steps: int, reps: int | None = None) -> float:
        """Seconds per step: the best of ``reps`` runs of ``fn(k)`` for ``k`` in
        ``range(steps)``."""
        out = float("inf")
        for _ in range(reps or self.a.repeat):
            t = time.perf_counter()
            for k in range(steps):
                fn(k)
            out = min(out, time.perf_counter() - t)
        return out / steps

    def zarr_sg(self, path: Path) -> StoreGate:
        return StoreGate("zarr", {"output_dir": str(path)}, data_id="nodes")

    def copy(self, name: str) -> Path:
        dst = self.scratch / name
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(self.pristine, dst)
        return dst

    def table(self, sg: StoreGate, optimizer: str | None) -> EmbeddingTable:
        """The table (created from ``w0`` block by block if missing, else opened)."""
        pos = [0]

        def from_w0(rng: Any, shape: tuple[int, int], dtype: Any) -> np.ndarray:
            a = pos[0]
            pos[0] += shape[0]
            return self.w0[a:a + shape[0]]

        return EmbeddingTable(sg, "nodes", "emb", self.n, self.dim, dtype=self.dtype,
                              optimizer=optimizer, lr=LR, eps=EPS, init=from_w0)

    def embedding(self) -> Any:
        """``nn.Embedding(sparse=True)`` holding a copy of ``w0``."""
        import torch

        return torch.nn.Embedding.from_pretrained(torch.from_numpy(self.w0).clone(),
                                                  freeze=False, sparse=True)

    # ------------------------------------------------------------------ the run
    def run(self) -> int:
        import torch

        a = self.a
        torch.manual_seed(0)
        if a.threads:
            torch.set_num_threads(a.threads)
        # torch's sparse Adagrad builds sparse tensors without invariant checks, and says so
        warnings.filterwarnings("ignore", message="Sparse invariant checks")
        print(f"# machine: {machine()}; {versions('torch', 'zarr')}; torch threads "
              f"{torch.get_num_threads()}\n# table {self.n:,} x {self.dim} {self.dtype} "
              f"({self.nbytes / MiB:,.0f} MiB), B = {self.b:,}", flush=True)
        sg = StoreGate("numpy")  # the initial weights: storegate's 'normal' init, seed 0
        self.w0 = EmbeddingTable(sg, "nodes", "emb", self.n, self.dim, dtype=self.dtype,
                                 seed=0).to_numpy()
        sg.close()
        t = time.perf_counter()
        sg = self.zarr_sg(self.pristine)
        self.table(sg, "adagrad")
        sg.close()
        self.create_s = time.perf_counter() - t
        import zarr

        self.chunk_rows = int(zarr.open_array(str(self.pristine / "nodes" / "train" / "emb"),
                                              mode="r").chunks[0])
        print(f"# tables created: {time.perf_counter() - self.t0:.0f} s", flush=True)
        if a.only in (None, "steps"):
            # one numpy-backend table and one zarr copy for both optimizers (updates discarded)
            self.np_sg = StoreGate("numpy")
            self.table(self.np_sg, None)
            self.direct = self.copy("direct.zarr")
            self.steps("sgd")
            self.steps("adagrad")
            self.np_sg.close()
            shutil.rmtree(self.direct, ignore_errors=True)
        if a.only in (None, "epoch"):
            self.epoch()
        print(f"# done: {time.perf_counter() - self.t0:.0f} s", flush=True)
        self.print_table()
        return 0

    # ------------------------------------------------------------------ per-step cases
    def steps(self, opt: str) -> None:
        n, d, b, steps = self.n, self.dim, self.b, self.a.steps
        case = f"step, random ids, {'SGD' if opt == 'sgd' else 'Adagrad'}"
        ids = [self.rng.integers(0, n, b) for _ in range(steps)]
        grads = [self.rng.standard_normal((b, d)).astype(self.dtype) for _ in range(8)]
        # the checks look at the rows updated and 4,096 others (the rest is never written)
        rows = np.union1d(np.concatenate(ids), self.rng.integers(0, n, 4096))
        ref_w, ref_s = self.steps_numpy(case, opt, ids, grads, rows)
        self.steps_torch(case, opt, ids, grads, rows, ref_w)
        self.steps_table(case, opt, ids, grads, rows, ref_w, ref_s)
        self.steps_zarr(case, opt, ids, grads)
        gc.collect()

    def steps_numpy(self, case: str, opt: str, ids: list[np.ndarray], grads: list[np.ndarray],
                    rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """numpy in memory: ``np.add.at`` (SGD), then the floor (coalesce + fancy write);
        returns the weights and state of ``rows`` after one pass of the floor (the checks'
        reference)."""
        steps = len(ids)
        if self.fw.shape != self.w0.shape:
            self.fw, self.fs = self.w0.copy(), np.zeros_like(self.w0)
        w, s = self.fw, self.fs
        w[:] = self.w0
        s[:] = 0

        def add_at(k: int) -> None:
            w[ids[k]]
            np.add.at(w, ids[k], -LR * grads[k % len(grads)])

        if opt == "sgd":
            sec = self.best(add_at, steps)
            self.add(Row(case, "numpy w[ids] + np.add.at(w, ids, -lr * g)", self.b, sec,
                         ref=f"floor {opt}"))
            w[:] = self.w0

        def floor(k: int) -> None:
            w[ids[k]]
            u, gs = coalesce(ids[k], grads[k % len(grads)])
            if opt == "sgd":
                w[u] -= LR * gs
            else:
                s[u] += gs * gs
                w[u] -= LR * gs / (np.sqrt(s[u]) + EPS)

        sec = self.best(floor, steps, 1)
        ref_w, ref_s = w[rows], s[rows]
        sec = min(sec, self.best(floor, steps))
        self.add(Row(case, "numpy w[ids] + coalesce + w[u] -= ... (the in-memory floor)",
                     self.b, sec, key=f"floor {opt}", ref=f"floor {opt}"))
        return ref_w, ref_s

    def steps_torch(self, case: str, opt: str, ids: list[np.ndarray], grads: list[np.ndarray],
                    rows: np.ndarray, ref_w: np.ndarray) -> None:
        """``nn.Embedding(sparse=True)`` + ``optim.SGD`` / ``optim.Adagrad``."""
        import torch

        emb = self.embedding()
        topt = (torch.optim.SGD(emb.parameters(), lr=LR) if opt == "sgd"
                else torch.optim.Adagrad(emb.parameters(), lr=LR, eps=EPS))
        tids = [torch.from_numpy(i) for i in ids]
        tg = [torch.from_numpy(x) for x in grads]

        def torch_step(k: int) -> None:
            out = emb(tids[k])
            out.backward(tg[k % len(tg)])
            topt.step()
            topt.zero_grad()

        sec = self.best(torch_step, len(ids), 1)
        self.check(case, "torch", emb.weight.detach().numpy()[rows], ref_w)
        sec = min(sec, self.best(torch_step, len(ids)))
        self.add(Row(case, f"torch nn.Embedding(sparse=True) + optim.{type(topt).__name__}",
                     self.b, sec, key=f"torch {opt}", ref=f"floor {opt}"))

    def steps_table(self, case: str, opt: str, ids: list[np.ndarray], grads: list[np.ndarray],
                    rows: np.ndarray, ref_w: np.ndarray, ref_s: np.ndarray) -> None:
        """EmbeddingTable on the numpy backend (and StoreEmbedding, flush: Adagrad)."""
        import torch

        steps = len(ids)
        tab = self.table(self.np_sg, opt)

        def table_step(k: int) -> None:
            tab.gather(ids[k])
            tab.apply_gradients(ids[k], grads[k % len(grads)])

        t = time.perf_counter()
        sec = self.best(table_step, steps, 1)  # the first step creates the working copy
        first = time.perf_counter() - t
        self.check(case, "numpy table", tab.gather(rows), ref_w)
        if opt == "adagrad":
            self.check(case, "numpy table state", tab.gather_state(rows), ref_s)
        sec = min(sec, self.best(table_step, steps))
        self.add(Row(case, "storegate EmbeddingTable, numpy backend: gather + apply_gradients",
                     self.b, sec, ref=f"floor {opt}", key=f"table {opt}",
                     note=f"first pass {first / steps * 1e3:.1f} ms/step (creates the working "
                     "copy)"))
        if opt == "adagrad":
            module = StoreEmbedding(tab)
            tids = [torch.from_numpy(i) for i in ids]
            tg = [torch.from_numpy(x) for x in grads]

            def module_step(k: int) -> None:
                out = module(tids[k])
                out.backward(tg[k % len(tg)])

            sec = self.best(module_step, steps)
            self.add(Row(case, "storegate StoreEmbedding(table) forward + backward, numpy "
                         "backend", self.b, sec, ref=f"table {opt}",
                         note="x ref: over the raw table calls (row above)"))
            t = time.perf_counter()
            tab.flush()
            self.add(Row("flush", "storegate EmbeddingTable.flush(), numpy backend", 0,
                         time.perf_counter() - t, note=f"{tab.num_embeddings:,} rows, "
                         f"{np.unique(np.concatenate(ids)).size:,} updated: the others copied"))
        else:
            tab.discard()

    def steps_zarr(self, case: str, opt: str, ids: list[np.ndarray],
                   grads: list[np.ndarray]) -> None:
        """EmbeddingTable on zarr: random ids over the whole table, ids in one chunk; then a
        PartitionBuffer's resident rows."""
        a, n, d, b = self.a, self.n, self.dim, self.b
        steps = len(ids)
        sg = self.zarr_sg(self.direct)
        tab = self.table(sg, opt)

        def table_step(k: int) -> None:
            tab.gather(ids[k])
            tab.apply_gradients(ids[k], grads[k % len(grads)])

        t = time.perf_counter()
        table_step(0)  # fills the read arena, creates the working copy
        first = time.perf_counter() - t
        sec = self.best(lambda k: table_step(1 + k % (steps - 1)), a.zarr_steps, 1)
        touched = np.unique(ids[1] // self.chunk_rows).size
        chunks = -(-n // self.chunk_rows)
        mib = touched * self.chunk_rows * d * self.dtype.itemsize / MiB
        self.add(Row(case, "storegate EmbeddingTable, zarr backend, random ids", b, sec,
                     ref=f"floor {opt}", note=f"{a.zarr_steps} steps; each rewrites {touched} "
                     f"of {chunks} chunks ({mib:,.0f} MiB"
                     f"{' x 2: weights + state' if opt == 'adagrad' else ''}); first step "
                     f"{fmt_ms(first * 1e3)}"))
        lo = n // 2 // self.chunk_rows * self.chunk_rows
        local = [lo + self.rng.integers(0, min(self.chunk_rows, n - lo), b) for _ in range(steps)]

        def local_step(k: int) -> None:
            tab.gather(local[k])
            tab.apply_gradients(local[k], grads[k % len(grads)])

        local_step(0)
        sec = self.best(local_step, steps)
        self.add(Row(case, "storegate EmbeddingTable, zarr backend, ids in one chunk", b, sec,
                     ref=f"floor {opt}", note=f"{self.chunk_rows:,}-row chunks"))
        tab.discard()

        # PartitionBuffer rows: ids in the resident partitions (no swap)
        buf = PartitionBuffer(self.table(sg, opt), a.parts, capacity=a.capacity)
        state = tuple(range(a.capacity))
        buf.swap_to(state)
        hi = buf.resident_range(state[-1])[1]
        res = [self.rng.integers(0, hi, b) for _ in range(steps)]

        def buf_step(k: int) -> None:
            buf.gather(res[k])
            buf.apply_gradients(res[k], grads[k % len(grads)])

        sec = self.best(buf_step, steps)
        self.add(Row(case, f"storegate PartitionBuffer ({a.capacity} of {a.parts} partitions "
                     "resident), zarr table", b, sec, ref=f"floor {opt}",
                     note="ids in the resident rows, no swap"))
        buf.close(flush=False)
        sg.close()

    def check(self, case: str, who: str, got: np.ndarray, want: np.ndarray) -> None:
        if not np.allclose(got, want, rtol=1e-4, atol=1e-6):
            err = float(np.abs(got - want).max())
            raise AssertionError(f"{case}: {who} differs from numpy (max abs err {err:.3g})")

    # ------------------------------------------------------------------ the epoch
    def epoch(self) -> None:
        a, n, b = self.a, self.n, self.b
        case = "epoch, BETA plan, Adagrad"
        parts, cap, sps = a.parts, a.capacity, a.steps_per_state
        plan = beta_plan(parts, cap, seed=0)
        offsets = equal_offsets(n, parts)  # the buffer's partition ranges
        # the ids of every step, drawn before the clock starts
        plan_ids: list[list[tuple[np.ndarray, np.ndarray]]] = []
        rng = np.random.default_rng(7)
        for k, state in enumerate(plan.states):
            buckets = plan.buckets[k] or [(i, j) for i in state for j in state]
            bi = np.array([i for i, _ in buckets])
            bj = np.array([j for _, j in buckets])
            st = np.array(state)
            per: list[tuple[np.ndarray, np.ndarray]] = []
            for _ in range(sps):
                pick = rng.integers(0, len(buckets), b)
                ends = [bi[pick], bj[pick], st[rng.integers(0, len(st), b)]]
                ids = np.concatenate([
                    offsets[p] + (rng.random(b) * (offsets[p + 1] - offsets[p])).astype(np.int64)
                    for p in ends])
                per.append((ids, rng.integers(0, RELATIONS, b)))
            plan_ids.append(per)
        self.rel0 = np.random.default_rng(3).normal(
            0, 1 / np.sqrt(self.dim), (RELATIONS, self.dim)).astype(self.dtype)
        steps = plan.num_states * sps
        note = f"{plan.num_states} states x {sps} steps"
        torch_w, torch_s = self.epoch_torch(case, plan_ids, steps, note)
        mem_w, mem_s = self.epoch_table(case, plan_ids, steps, torch_w, torch_s)
        del torch_w, torch_s
        gc.collect()
        for prefetch in (True, False):
            self.epoch_buffer(case, plan, plan_ids, steps, prefetch, mem_w, mem_s)
            gc.collect()

    def relations(self) -> tuple[Any, Any]:
        """The dense relation vectors of the model and their torch Adagrad."""
        import torch

        rel = torch.nn.Embedding.from_pretrained(torch.from_numpy(self.rel0.copy()),
                                                 freeze=False)
        return rel, torch.optim.Adagrad(rel.parameters(), lr=LR, eps=EPS)

    def train_step(self, lookup: Any, rel: Any, ropt: Any, ids: np.ndarray,
                   rels: np.ndarray) -> None:
        """One DistMult step: ``lookup(ids)`` gives the source, destination and negative rows;
        the backward pass leaves their gradients to ``lookup`` (StoreEmbedding applies them
        itself, nn.Embedding leaves them to its optimizer)."""
        import torch

        b, d = self.b, self.dim
        x = lookup(torch.from_numpy(ids))
        h, t, neg = x[:b], x[b:2 * b], x[2 * b:]
        hr = h * rel(torch.from_numpy(rels))
        pos = (hr * t).sum(-1)
        negs = torch.bmm(hr.view(-1, NEG_CHUNK, d), neg.view(-1, NEG_CHUNK, d).transpose(1, 2))
        loss = torch.nn.functional.softplus(-pos).mean() + \
            torch.nn.functional.softplus(negs).mean()
        loss.backward()
        ropt.step()
        ropt.zero_grad()

    def walk(self, plan_ids: list[list[tuple[np.ndarray, np.ndarray]]], lookup: Any, rel: Any,
             ropt: Any, states: Any = None, entered: Callable[[int], None] | None = None,
             after: Callable[[], None] | None = None) -> tuple[float, float, float]:
        """Run the epoch's steps (entering each state of ``states`` first, if given); returns
        the seconds of the epoch, of the training steps alone and of the first step."""
        compute = first = 0.0
        t0 = time.perf_counter()
        for k, _state in enumerate(states if states is not None else plan_ids):
            if entered is not None:
                entered(k)
            for ids, rels in plan_ids[k]:
                t = time.perf_counter()
                self.train_step(lookup, rel, ropt, ids, rels)
                if after is not None:
                    after()
                compute += time.perf_counter() - t
                first = first or time.perf_counter() - t0
        return time.perf_counter() - t0, compute, first

    def epoch_torch(self, case: str, plan_ids: list[list[tuple[np.ndarray, np.ndarray]]],
                    steps: int, note: str) -> tuple[np.ndarray, np.ndarray]:
        """The epoch on ``nn.Embedding(sparse=True)`` + ``optim.Adagrad``, whole table."""
        import torch

        emb = self.embedding()
        eopt = torch.optim.Adagrad(emb.parameters(), lr=LR, eps=EPS)
        rel, ropt = self.relations()

        def opt_step() -> None:
            eopt.step()
            eopt.zero_grad()

        sec, _, _ = self.walk(plan_ids, emb, rel, ropt, after=opt_step)
        self.add(Row(case, "torch nn.Embedding(sparse=True) + optim.Adagrad, whole table",
                     3 * self.b, sec, steps, key="torch epoch", ref="torch epoch", note=note))
        return emb.weight.detach().numpy(), eopt.state[emb.weight]["sum"].numpy()

    def epoch_table(self, case: str, plan_ids: list[list[tuple[np.ndarray, np.ndarray]]],
                    steps: int, torch_w: np.ndarray, torch_s: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        """The epoch on StoreEmbedding over the numpy-backend table (no buffer)."""
        sg = StoreGate("numpy")
        tab = self.table(sg, "adagrad")
        module = StoreEmbedding(tab)
        rel, ropt = self.relations()
        sec, _, first = self.walk(plan_ids, module, rel, ropt)
        t0 = time.perf_counter()
        tab.flush()
        flush = time.perf_counter() - t0
        mem_w, mem_s = tab.to_numpy(), tab.to_numpy(state=True)
        sg.close()
        # float32 rounding: torch sums a row's duplicate gradients in another order, and
        # Adagrad's step on a row whose summed gradient is near 0 (lr * g / sqrt(s)) turns a
        # last-bit difference into a visible one, which the shared relation vectors spread; a
        # few weights drift, the rest agree (with --dtype float64 the two epochs agree to
        # ~1e-10 everywhere)
        diff = mem_w - torch_w
        np.abs(diff, out=diff)
        worst, off = float(diff.max()), float((diff > 1e-3).mean())
        q = float(np.quantile(diff[::61], 0.999))  # every 61st row: a sample
        state_off = float((~np.isclose(mem_s[::61], torch_s[::61], rtol=1e-3, atol=1e-6)
                           ).mean())
        del diff
        if off > 1e-2 or state_off > 1e-2:
            raise AssertionError(f"{case}: the numpy-table epoch differs from torch's: max abs "
                                 f"err {worst:.3g}, {off:.2%} of the weights off by more than "
                                 f"1e-3, {state_off:.2%} of the Adagrad state off by more than "
                                 "0.1 %")
        self.add(Row(case, "storegate StoreEmbedding(table), numpy backend, whole table",
                     3 * self.b, sec, steps, ref="torch epoch",
                     note=f"first step {fmt_ms(first * 1e3)} (creates the working copies of "
                     f"weights and state); flush after the epoch {fmt_ms(flush * 1e3)}; vs "
                     "torch's weights: 99.9 % "
                     f"within {q:.0e}, {off:.2%} off by > 1e-3 (max {worst:.1g}; {self.dtype} "
                     "rounding, see the docstring)"))
        return mem_w, mem_s

    def epoch_buffer(self, case: str, plan: Any,
                     plan_ids: list[list[tuple[np.ndarray, np.ndarray]]], steps: int,
                     prefetch: bool, mem_w: np.ndarray, mem_s: np.ndarray) -> None:
        """The epoch on StoreEmbedding over a PartitionBuffer of the zarr table."""
        a = self.a
        path = self.copy(f"buffer-{prefetch}.zarr")
        sg = self.zarr_sg(path)
        tab = self.table(sg, "adagrad")
        buf = PartitionBuffer(tab, a.parts, capacity=a.capacity, prefetch=prefetch)
        module = StoreEmbedding(buf)
        rel, ropt = self.relations()
        first = BufferStats()

        def entered(k: int) -> None:
            nonlocal first
            if k == 0:  # the first state is read synchronously: nothing can hide it
                first = BufferStats(**vars(buf.stats))

        sec, compute, _ = self.walk(plan_ids, module, rel, ropt, buf.states(plan), entered)
        stats = BufferStats(**vars(buf.stats))
        t0 = time.perf_counter()
        buf.flush()
        flush = time.perf_counter() - t0
        buf.close()
        after = BufferStats(io_seconds=stats.io_seconds - first.io_seconds,
                            stall_seconds=stats.stall_seconds - first.stall_seconds)
        who = (f"storegate StoreEmbedding(PartitionBuffer(zarr table, {a.parts} parts, "
               f"capacity {a.capacity}{'' if prefetch else ', prefetch=False'}))")
        part_mib = self.n / a.parts * self.dim * self.dtype.itemsize / MiB
        self.add(Row(case, who, 3 * self.b, sec, steps, ref="torch epoch",
                     note=f"training steps {compute:.2f} s, swaps {sec - compute:.2f} s "
                     f"(slots change arrays by reference: no copies); {stats.reads} "
                     f"partition reads, {stats.writes} write-backs ({part_mib:,.0f} MiB + its "
                     "state each)", stats={
                         "io": stats.io_seconds, "stall": stats.stall_seconds,
                         "hidden": stats.hidden_fraction, "first": first.stall_seconds,
                         "hidden_after": after.hidden_fraction}))
        self.add(Row("flush", "PartitionBuffer.flush() after the epoch"
                     f"{'' if prefetch else ', prefetch=False'}", 0, flush,
                     note=f"write-back of the {a.capacity} resident partitions + commit "
                     "(rename of the working copy)"))
        got_w, got_s = tab.to_numpy(), tab.to_numpy(state=True)
        sg.close()
        shutil.rmtree(path, ignore_errors=True)
        if not (np.array_equal(got_w, mem_w) and np.array_equal(got_s, mem_s)):
            err = float(np.abs(got_w - mem_w).max())
            raise AssertionError(f"{who}: differs from the numpy-table epoch (max abs err "
                                 f"{err:.3g})")

    # ------------------------------------------------------------------ the table
    def print_table(self) -> None:
        a = self.a
        keyed = {r.key: r for r in self.rows if r.key}
        setup = (f"{machine()}; {versions('torch', 'zarr')}. Table {self.n:,} x {self.dim} "
                 f"{self.dtype} ({self.nbytes / MiB:,.0f} MiB, + the same for Adagrad's "
                 f"state), zarr: local directory (page cache), uncompressed {self.chunk_rows:,}"
                 f"-row chunks (created in {self.create_s:.1f} s); B = {self.b:,} ids per "
                 f"step; steps: best of {a.repeat} runs of {a.steps}; epoch: "
                 f"beta_plan({a.parts}, {a.capacity}), {a.steps_per_state} DistMult steps per "
                 f"state (B positives, B negatives in chunks of {NEG_CHUNK}: 3B rows). "
                 "x ref: time / the numpy floor of the case (steps), torch in memory (epoch), "
                 "or the row named in the note. Load average (1 min) of the shared machine: "
                 f"{self.load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.")
        print("\n| case | implementation | rows/step | time/step | M rows/s | x ref | I/O s | "
              "stall s | hidden | note |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
        print(f"| setup | {setup} | | | | | | | | |")
        for r in self.rows:
            ref = keyed.get(r.ref)
            ratio = f"{r.seconds / r.steps / (ref.seconds / ref.steps):.2f}x" \
                if ref is not None and r.rows_per_step else ""
            per = fmt_ms(r.seconds / r.steps * 1e3)
            if r.case == "flush":
                per = fmt_ms(r.seconds * 1e3)
            note = r.note
            if r.steps > 1:
                note = f"epoch {r.seconds:.2f} s; " + note
            s = r.stats
            io = f"{s['io']:.2f}" if s else ""
            stall = f"{s['stall']:.2f}" if s else ""
            hidden = (f"{s['hidden']:.0%} ({s['hidden_after']:.0%} after the first state)"
                      if s else "")
            if s:
                note += f"; first state stalled {s['first']:.2f} s"
            rate = f"{r.rate / 1e6:.2f}" if r.rows_per_step else ""
            rps = f"{r.rows_per_step:,}" if r.rows_per_step else ""
            print(f"| {r.case} | {r.who} | {rps} | {per} | {rate} | {ratio} | {io} | {stall} | "
                  f"{hidden} | {note} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1 << 20, help="rows N of the table")
    ap.add_argument("--dim", type=int, default=128, help="width of the table")
    ap.add_argument("--batch", type=int, default=4096, help="ids per step B")
    ap.add_argument("--steps", type=int, default=40, help="steps per timed run (in memory)")
    ap.add_argument("--zarr-steps", type=int, default=2,
                    help="timed steps with random ids straight on the zarr table")
    ap.add_argument("--parts", type=int, default=16, help="partitions of the buffer")
    ap.add_argument("--capacity", type=int, default=None,
                    help="partitions in memory (default: parts / 4)")
    ap.add_argument("--steps-per-state", type=int, default=8,
                    help="training steps per BETA state")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (0: torch's default, one per core)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                    help="dtype of the table (float64: torch and storegate agree to ~1e-10)")
    ap.add_argument("--only", choices=["steps", "epoch"], default=None,
                    help="run only the per-step cases or only the epochs")
    ap.add_argument("--repeat", type=int, default=3, help="runs per step case (the best kept)")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run (CI)")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = ap.parse_args(argv)
    if args.quick:
        args.rows, args.dim, args.steps, args.repeat = 65_536, 64, 10, 2
        args.parts, args.steps_per_state = 8, 4
    if args.capacity is None:
        args.capacity = max(2, args.parts // 4)
    if min(args.rows, args.dim, args.batch, args.steps, args.zarr_steps, args.parts,
           args.steps_per_state, args.repeat) < 1 or args.steps < 2:
        ap.error("sizes and counts must be positive (--steps at least 2)")
    if args.batch % NEG_CHUNK:
        ap.error(f"--batch must be a multiple of {NEG_CHUNK} (negatives are shared in chunks)")
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="storegate-bench-emb-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        return Bench(args, scratch).run()
    finally:
        if not args.dir:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
