"""DistMult link prediction on a synthetic knowledge graph, with the entity embeddings on disk.

Marius-style out-of-core training with storegate:

1. A synthetic knowledge graph (4,096 entities in clusters of 16, 6 relations; relation ``r``
   links cluster ``c`` to cluster ``c XOR (r + 1)``, a symmetric pattern DistMult can learn)
   is written into a zarr store with ``storegate.pyg.from_data`` (the relation of each triple
   is the edge var ``edge_type``); 5 % of the triples are held out for validation and 5 % for
   test.
2. ``storegate.graph.partition`` splits the entities into ``P`` partitions (contiguous row
   ranges after renumbering) and orders the training triples into ``P x P`` edge buckets.
3. The entity embeddings (and their Adagrad state) are an ``EmbeddingTable`` in the store; a
   ``PartitionBuffer`` holds a quarter of the partitions in memory and walks a BETA plan per
   epoch, prefetching the next partitions and writing back the evicted ones in the
   background. ``StoreEmbedding`` applies the sparse Adagrad update in ``backward()``; the
   relation embeddings are an ordinary ``torch.nn.Embedding``. Negatives are drawn from the
   resident entities (as Marius does). Each epoch ends with a flush (the commit point).
4. Evaluation loads the whole table (``full_load``) and reports filtered MRR and Hits@10 of
   tail prediction on the test triples (every true tail of ``(h, r)`` other than the one
   ranked is filtered out).

Run: ``python examples/link_prediction.py [--epochs 8] [--parts 8] [--dim 32] [--dir DIR]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.data import Data

from storegate import StoreGate
from storegate.embeddings import EmbeddingTable, PartitionBuffer, StoreEmbedding, beta_plan
from storegate.graph import partition
from storegate.pyg import from_data


def synthetic_kg(entities: int = 4096, relations: int = 6, triples: int = 60_000,
                 cluster: int = 16, seed: int = 0) -> np.ndarray:
    """``(triples, 3)`` int64 rows ``(head, relation, tail)``, without duplicates."""
    rng = np.random.default_rng(seed)
    clusters = entities // cluster
    h = rng.integers(0, entities, triples)
    r = rng.integers(0, relations, triples)
    target = (h // cluster) ^ (r + 1)
    t = (target % clusters) * cluster + rng.integers(0, cluster, triples)
    kg = np.unique(np.stack([h, r, t], axis=1), axis=0)
    return kg[rng.permutation(len(kg))]


def tail_filtered_ranks(emb: torch.Tensor, rel: torch.Tensor, test: np.ndarray,
                        known: np.ndarray) -> np.ndarray:
    """Rank of the true tail among all entities, other known tails of ``(h, r)`` removed."""
    true_tails: dict[tuple[int, int], list[int]] = {}
    for h, r, t in known.tolist():
        true_tails.setdefault((h, r), []).append(t)
    ranks = []
    for start in range(0, len(test), 512):
        batch = torch.from_numpy(test[start:start + 512])
        scores = (emb[batch[:, 0]] * rel[batch[:, 1]]) @ emb.T
        for k, (h, r, t) in enumerate(batch.tolist()):
            row = scores[k]
            others = [x for x in true_tails[(h, r)] if x != t]
            target = row[t].item()
            row[others] = -float("inf")
            ranks.append(1 + int((row > target).sum()))
    return np.asarray(ranks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--parts", type=int, default=8, help="partitions P (buffer: P/4)")
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--negatives", type=int, default=128)
    ap.add_argument("--dir", default=None, help="where to put the store (default: temp dir)")
    args = ap.parse_args()
    torch.manual_seed(0)
    # leave a core to the buffer's I/O thread: torch's intra-op threads spinning beside it made
    # each step ~50x slower on this 2-core machine (see docs/graphs.md)
    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))
    rng = np.random.default_rng(0)
    workdir = args.dir or tempfile.mkdtemp(prefix="sg-kg-")
    kg = synthetic_kg()
    n_entities, n_relations = 4096, 6
    n_held = len(kg) // 20
    test, valid, train = kg[:n_held], kg[n_held:2 * n_held], kg[2 * n_held:]
    print(f"knowledge graph: {n_entities} entities, {n_relations} relations, "
          f"{len(train)} train / {len(valid)} valid / {len(test)} test triples")

    # 1. the training triples into a zarr store (PyG layout; relation = edge var edge_type)
    store = os.path.join(workdir, "kg.zarr")
    sg = StoreGate("zarr", {"output_dir": store})
    data = Data(edge_index=torch.from_numpy(train[:, [0, 2]].T.copy()),
                edge_type=torch.from_numpy(train[:, 1].copy()), num_nodes=n_entities)
    from_data(data, sg, layout="coo")

    # 2. partitions and edge buckets
    t0 = time.perf_counter()
    plan = partition(sg, args.parts, method="random", seed=0)
    sizes = plan.bucket_sizes()
    print(f"partitioned into {plan.num_parts} partitions of <= {plan.max_part_rows} entities, "
          f"{plan.num_parts ** 2} buckets of {sizes.min()}-{sizes.max()} triples "
          f"({time.perf_counter() - t0:.2f} s)")
    orig = sg.db.read("nodes", "train", "orig_id", slice(0, n_entities, 1))
    new_id = np.empty(n_entities, dtype=np.int64)
    new_id[orig] = np.arange(n_entities)  # original entity id -> row of the table

    # 3. the entity table on disk, a buffer of P/4 partitions, relations in memory
    table = EmbeddingTable(sg, "nodes", "entity", n_entities, args.dim, optimizer="adagrad",
                           lr=0.5, init_scale=0.3, seed=0)
    capacity = max(2, args.parts // 4)
    buffer = PartitionBuffer(table, plan, capacity=capacity)
    entities = StoreEmbedding(buffer)
    relations = torch.nn.Embedding(n_relations, args.dim)
    torch.nn.init.ones_(relations.weight)
    rel_opt = torch.optim.Adagrad(relations.parameters(), lr=0.5)
    print(f"entity table: {table!r}; buffer holds {capacity} of {plan.num_parts} partitions")

    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        total, steps = 0.0, 0
        swap_plan = beta_plan(plan.num_parts, capacity, seed=epoch)
        for bucket in buffer.edge_buckets(swap_plan, edge_vars=("edge_type",)):
            if bucket.src.size == 0:
                continue
            pool = np.concatenate([np.arange(*buffer.resident_range(p)) for p in bucket.state])
            order = rng.permutation(bucket.src.size)
            for start in range(0, order.size, args.batch):
                sel = order[start:start + args.batch]
                b = sel.size
                negs = rng.choice(pool, args.negatives)
                ids = torch.from_numpy(np.concatenate([bucket.src[sel], bucket.dst[sel], negs]))
                e = entities(ids)  # one lookup: its backward updates the table once
                h, t, n = e[:b], e[b:2 * b], e[2 * b:]
                r = relations(torch.from_numpy(bucket.vars["edge_type"][sel]))
                pos = (h * r * t).sum(-1, keepdim=True)
                tail_neg = (h * r) @ n.T  # corrupt the tail
                head_neg = (t * r) @ n.T  # corrupt the head
                target = torch.zeros(b, dtype=torch.long)
                loss = (F.cross_entropy(torch.cat([pos, tail_neg], 1), target)
                        + F.cross_entropy(torch.cat([pos, head_neg], 1), target))
                rel_opt.zero_grad()
                loss.backward()
                rel_opt.step()
                total += loss.item()
                steps += 1
        buffer.flush()  # the commit point: a crash from here on restarts at this epoch
        print(f"epoch {epoch}: loss {total / max(steps, 1):.4f}, {steps} steps, "
              f"{len(swap_plan.states)} buffer states, {time.perf_counter() - t0:.2f} s")

    st = buffer.stats
    print(f"swaps: {st.reads} partition reads, {st.writes} write-backs, I/O "
          f"{st.io_seconds:.2f} s of which {st.hidden_fraction:.0%} hidden by prefetch")

    # 4. filtered evaluation with the whole table in memory
    buffer.full_load()
    with torch.no_grad():
        emb = torch.from_numpy(buffer.gather(np.arange(n_entities)))
        rel = relations.weight.detach()
        mapped = np.stack([new_id[kg[:, 0]], kg[:, 1], new_id[kg[:, 2]]], axis=1)
        ranks = tail_filtered_ranks(emb, rel, mapped[:n_held], mapped)
    buffer.close()
    print(f"test (filtered, tails): MRR {np.mean(1.0 / ranks):.3f}, "
          f"Hits@10 {np.mean(ranks <= 10):.3f} over {len(ranks)} triples "
          f"(random guessing: MRR ~{np.mean(1.0 / np.arange(1, n_entities + 1)):.3f})")
    sg.close()


if __name__ == "__main__":
    main()
