"""One entry point for every conversion: ``convert(SRC, DST)``, the engine of
``storegate convert``.

The kind of ``SRC`` is sniffed from its first bytes (zip: NPZ, ``PAR1``: Parquet,
``\\x89HDF``: HDF5) or, for a directory, by asking the installed backends whether it is one of
their stores (multiml's zarr format 2 stores included); a directory of ``.parquet`` files is a
Parquet dataset. ``DST`` is a file to export to when its name ends in ``.npz``, ``.h5``/
``.hdf5`` or ``.parquet``/``.pq`` and no ``backend`` is given; otherwise it is a new store
(``backend``, default ``zarr``).

* file -> store: import (:func:`import_npz`, :func:`import_parquet`, :func:`import_hdf5`);
* store -> file: export one data_id (:func:`export_npz`, ...);
* store -> store: :func:`copy_store`;
* file -> file: import into a temporary zarr store beside ``DST``, then export.

The destination is written under a temporary name beside it and renamed at the end, so a
failure leaves nothing at ``DST``.

Examples
--------
>>> import os, tempfile, numpy as np
>>> d = tempfile.mkdtemp()
>>> np.savez(os.path.join(d, "jets.npz"), pt=np.arange(10.0), label=np.arange(10) % 2)
>>> res = convert(os.path.join(d, "jets.npz"), os.path.join(d, "jets.zarr"),
...               phase=(0.8, 0.1, 0.1))
>>> res.data_id, res.sizes
('jets', {'train': 8, 'valid': 1, 'test': 1})
>>> out = convert(os.path.join(d, "jets.zarr"), os.path.join(d, "again.npz"))
>>> sorted(np.load(out.path).files)
['idx_test', 'idx_train', 'idx_val', 'label', 'pt']
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from typing import Any

from ..errors import InvalidArgumentError
from ..phases import PHASES
from ..progress import Progress
from .errors import SourceFormatError, SourceNotFoundError
from .results import ExportResult, ImportResult
from .staging import remove_path, staged

__all__ = ["FILE_SUFFIXES", "convert", "data_id_for", "sniff"]

logger = logging.getLogger(__name__)

#: File name endings taken as files to export to, and their format.
FILE_SUFFIXES = {".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5",
                 ".parquet": "parquet", ".pq": "parquet"}
_MAGIC = ((b"PK\x03\x04", "npz"), (b"PK\x05\x06", "npz"), (b"PAR1", "parquet"),
          (b"\x89HDF\r\n\x1a\n", "hdf5"))


def sniff(path: str) -> tuple[str, str | None]:
    """What ``path`` is: ``('npz' | 'parquet' | 'hdf5', None)`` for a file (a directory of
    Parquet files is ``'parquet'``) or ``('store', backend name)`` for a store.

    Raises
    ------
    SourceNotFoundError
        Nothing at ``path``.
    SourceFormatError
        Neither a known file format nor a store any installed backend recognises.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> p = os.path.join(tempfile.mkdtemp(), "a.npz"); np.savez(p, x=np.zeros(2))
    >>> sniff(p)
    ('npz', None)
    """
    from ..backends.registry import guess_backend
    from ..errors import CorruptStoreError, StoreNotFoundError

    if "://" not in path and not os.path.exists(path):
        raise SourceNotFoundError(f"no such file or directory: {path!r}.", path)
    if "://" in path or os.path.isdir(path):
        try:
            return "store", guess_backend(path)
        except StoreNotFoundError:
            raise SourceNotFoundError(f"no such store: {path!r}.", path) from None
        except CorruptStoreError:
            if os.path.isdir(path) and any(n.endswith((".parquet", ".pq"))
                                           for n in os.listdir(path)):
                return "parquet", None
            raise SourceFormatError(
                f"{path!r} is a directory but neither a store an installed backend recognises "
                "nor a directory of .parquet files; pass --backend NAME if a plugin wrote it.",
                path) from None
    with open(path, "rb") as f:
        head = f.read(8)
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind, None
    if not head:
        raise SourceFormatError(f"{path!r} is empty; there is nothing to convert.", path)
    raise SourceFormatError(
        f"{path!r} is not an NPZ, Parquet or HDF5 file (its first bytes are {head[:4]!r}); "
        "storegate converts those files and stores.", path)


def data_id_for(path: str) -> str:
    """The default data_id of an imported file: its name without extension, made a valid
    name.

    >>> data_id_for("/data/kinase.v2.npz")
    'kinase.v2'
    """
    base = os.path.basename(os.path.normpath(path))
    stem = os.path.splitext(base)[0] if not os.path.isdir(path) else base
    for suffix in (".zarr", ".parquet", ".h5", ".npz"):
        stem = stem.removesuffix(suffix)
    stem = re.sub(r"[/\\\x00]", "_", stem).lstrip(".") or "data"
    return stem[:255]


def convert(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    backend: str | None = None,
    src_backend: str | None = None,
    data_id: str | None = None,
    phase: Any = None,
    shuffle: int | None = None,
    dtype: Any = None,
    layout: str | None = None,
    overwrite: bool = False,
    progress: Progress = None,
) -> ImportResult | ExportResult | list[ImportResult]:
    """Convert ``src`` (NPZ, Parquet, HDF5 file or a store) into ``dst`` (a store or a file).

    Parameters
    ----------
    src, dst
        Paths (see the module docstring for how their kinds are told apart).
    backend
        Backend of a ``dst`` store (default ``'zarr'``); giving it makes ``dst`` a store even
        if its name ends in ``.parquet``.
    src_backend
        Backend of a ``src`` store when it cannot be guessed.
    data_id
        Imports: the data_id to create (default: the file's name). Exports and copies: the
        data_id to export/copy (default: the store's only data_id; all of them for copies).
    phase
        Imports: where rows go (a phase name, fractions ``(0.8, 0.1, 0.1)``, counts; default
        the file's own phases, else ``'train'``). Exports: ``'all'`` (default) or one phase.
    shuffle
        Seed: shuffle the rows of every phase of the new store (imports and copies).
    dtype
        Cast floating-point vars to this float dtype (imports and copies).
    layout
        Imports: the source layout (``'kinoml'``, ``'plain'``/``'table'``; default auto).
        Exports: the file layout (default: the layout the data came from, else plain/table).
    overwrite
        Replace an existing ``dst``.
    progress
        ``None``, ``True`` (tqdm) or a tqdm-like factory.

    Returns
    -------
    ImportResult, ExportResult or list of ImportResult (store copies)
    """
    from ..gate import StoreGate

    src, dst = os.fspath(src), os.fspath(dst)
    kind, found = sniff(src)
    dst_format = None if backend is not None else FILE_SUFFIXES.get(
        os.path.splitext(dst)[1].lower())
    if dst_format is not None and shuffle is not None and kind == "store":
        raise InvalidArgumentError(
            "shuffle applies when rows are written into a store; shuffle the store first "
            "(StoreGate.shuffle) or convert into a store with shuffle=SEED.")
    if kind == "store":
        gate = StoreGate.open(src, backend=src_backend or found, mode="r")
        try:
            if dst_format is not None:
                return _export(gate, dst, dst_format, data_id, phase, layout, overwrite,
                               progress)
            if phase is not None:
                raise InvalidArgumentError(
                    "phase= splits imported files; a store copy keeps the source's phases.")
            return _into_store(dst, backend, overwrite, shuffle, lambda out: _copy(
                gate, out, data_id, dtype, progress))
        finally:
            gate.close()
    if dst_format is None:
        did = data_id or data_id_for(src)
        return _into_store(dst, backend, overwrite, shuffle, lambda out: _import(
            kind, src, out, did, phase, dtype, layout, progress))
    # file -> file: through a temporary store beside the destination
    parent = os.path.dirname(os.path.abspath(dst))
    os.makedirs(parent, exist_ok=True)
    # named like staged()'s temporaries, so a killed run's leftovers are removed next time
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(dst)}.sg-tmp-{os.getpid()}-",
                           dir=parent)
    try:
        gate = StoreGate("zarr", {"output_dir": os.path.join(tmp, "store.zarr")})
        did = data_id or data_id_for(src)
        _import(kind, src, gate, did, phase, dtype, layout if kind == dst_format else None,
                progress)
        if shuffle is not None:
            gate.shuffle("all", seed=shuffle)
        out = _export(gate, dst, dst_format, did, "all", None, overwrite, progress)
        gate.close()
        return out
    finally:
        remove_path(tmp)


def _into_store(dst: str, backend: str | None, overwrite: bool, shuffle: int | None,
                fill: Any) -> Any:
    from ..backends.registry import get_backend
    from ..gate import StoreGate

    name = backend or "zarr"
    cls = get_backend(name)
    with staged(dst, overwrite=overwrite) as tmp:
        gate = StoreGate(name, cls.location_args(tmp, "w"))
        try:
            result = fill(gate)
            if shuffle is not None:
                for did in gate.get_data_ids():
                    gate.set_data_id(did)
                    gate.shuffle("all", seed=shuffle)
        finally:
            gate.close()
    return result


def _import(kind: str, src: str, gate: Any, data_id: str, phase: Any, dtype: Any,
            layout: str | None, progress: Progress) -> ImportResult:
    if kind == "npz":
        from .npz import import_npz

        return import_npz(src, gate, data_id, layout=layout or "auto", phase=phase,
                          dtype=dtype, progress=progress)
    if kind == "parquet":
        from .parquet import import_parquet

        table = {"plain": "table"}.get(layout or "auto", layout or "auto")
        return import_parquet(src, gate, data_id, layout=table, phase=phase,
                              dtype=dtype, progress=progress)
    from .hdf5 import import_hdf5

    return import_hdf5(src, gate, data_id, phase=phase, dtype=dtype, progress=progress)


def _copy(gate: Any, out: Any, data_id: str | None, dtype: Any,
          progress: Progress) -> list[ImportResult]:
    from .stores import copy_store

    return copy_store(gate, out, None if data_id is None else [data_id], dtype=dtype,
                      progress=progress)


def _export(gate: Any, dst: str, fmt: str, data_id: str | None, phase: Any,
            layout: str | None, overwrite: bool, progress: Progress) -> ExportResult:
    ids = gate.get_data_ids()
    if data_id is None:
        if len(ids) != 1:
            raise InvalidArgumentError(
                f"the store holds data_ids {ids}; choose the one to export with data_id= "
                "(--data-id).")
        data_id = ids[0]
    phase = "all" if phase is None else phase
    if phase != "all" and phase not in PHASES:
        raise InvalidArgumentError(
            f"an export takes phase 'all' or one of {PHASES}, got {phase!r}.")
    if fmt == "npz":
        from .npz import export_npz

        return export_npz(gate, dst, data_id, phase, layout=layout or "auto",
                          overwrite=overwrite, progress=progress)
    if fmt == "parquet":
        from .parquet import export_parquet

        table = {"plain": "table", "auto": "table"}.get(layout or "table", layout or "table")
        return export_parquet(gate, dst, data_id, phase, layout=table,
                              overwrite=overwrite, progress=progress)
    from .hdf5 import export_hdf5

    return export_hdf5(gate, dst, data_id, phase, overwrite=overwrite, progress=progress)
