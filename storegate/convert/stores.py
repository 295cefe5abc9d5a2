"""Copy data_ids from one store into another, whatever the two backends.

The main use is bringing multiml's zarr (format 2) stores into storegate: the zarr backend
opens them read-only as they are, and :func:`copy_store` writes their data into any backend
(a zarr format 3 store, parquet, hybrid, a plugin). Rows are copied in blocks of about
16 MiB, so memory stays bounded; var order, dtypes, ragged vars and the data_ids' own
attributes carry over.

Examples
--------
>>> import numpy as np
>>> from storegate import StoreGate
>>> src = StoreGate("numpy", data_id="jets")
>>> src.add_data("pt", np.arange(6.0), phase=(4, 1, 1))
>>> dst = StoreGate("numpy")
>>> res = copy_store(src, dst)
>>> [(r.data_id, r.sizes["train"]) for r in res]
[('jets', 4)]
>>> dst.set_data_id("jets"); dst["valid"]["pt"][:].tolist()
[4.0]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import DataIdNotFoundError, InvalidArgumentError
from ..phases import PHASES
from ..progress import Progress, progress_bar
from ..ragged import RaggedArray
from .results import ImportedVar, ImportResult
from .target import ImportTarget, float_cast

__all__ = ["copy_store"]

logger = logging.getLogger(__name__)

#: Bytes copied per block.
BLOCK_BYTES = 16 * 2**20
#: data_id attributes that belong to the store they are in (compile state) and are rebuilt.
_OWN_ATTRS = ("storegate",)


def copy_store(
    src: Any,
    dst: Any,
    data_ids: Sequence[str] | None = None,
    *,
    dtype: Any = None,
    do_compile: bool = True,
    progress: Progress = None,
) -> list[ImportResult]:
    """Copy data_ids (all phases and vars) from the StoreGate ``src`` into ``dst``.

    Parameters
    ----------
    src
        The :class:`~storegate.StoreGate` to read (e.g. ``StoreGate.open('old.zarr')`` on a
        multiml store).
    dst
        The :class:`~storegate.StoreGate` to write into; the data_ids must not hold vars of
        the same names there.
    data_ids
        The data_ids to copy; ``None``: all of them.
    dtype
        Cast floating-point vars to this float dtype (e.g. ``'float32'``).
    do_compile
        Compile each copied data_id.
    progress
        ``None``, ``True`` (tqdm) or a tqdm-like factory; counts bytes.

    Returns
    -------
    list of ImportResult
        One per data_id copied.

    Raises
    ------
    DataIdNotFoundError
        A requested data_id is not in ``src``.
    VarExistsError
        ``dst`` already holds a var of the same name in that data_id.
    """
    from ..gate import StoreGate

    for name, gate in (("src", src), ("dst", dst)):
        if not isinstance(gate, StoreGate):
            raise InvalidArgumentError(
                f"{name} must be a StoreGate, got {type(gate).__name__}.")
    cast = float_cast(dtype)
    available = src.get_data_ids()
    wanted = list(available) if data_ids is None else list(data_ids)
    missing = [d for d in wanted if d not in available]
    if missing:
        raise DataIdNotFoundError(
            f"data_id(s) {missing} are not in the source store; it holds {available}.")
    db = src.db
    total = sum(db.info(d, ph, v).nbytes for d in wanted for ph in PHASES
                for v in db.var_names(d, ph))
    results = []
    with progress_bar(progress, total=total, unit="B", desc="copy") as bar:
        for data_id in wanted:
            results.append(_copy_one(src, dst, data_id, cast, do_compile, bar))
    return results


def _copy_one(src: Any, dst: Any, data_id: str, cast: np.dtype | None, do_compile: bool,
              bar: Any) -> ImportResult:
    db = src.db
    names = {ph: db.var_names(data_id, ph) for ph in PHASES}
    sizes = {ph: (db.info(data_id, ph, names[ph][0]).length if names[ph] else 0)
             for ph in PHASES}
    every = list(dict.fromkeys(v for ph in PHASES for v in names[ph]))
    target = ImportTarget(dst, data_id)
    target.check_new(every, sizes)
    out: dict[str, ImportedVar] = {}
    with target:
        for ph in PHASES:
            for var in names[ph]:
                info = db.info(data_id, ph, var)
                step = max(1, BLOCK_BYTES // max(1, info.nbytes // max(1, info.length)))
                for a in range(0, info.length, step):
                    rows = db.read(data_id, ph, var, slice(a, min(info.length, a + step), 1))
                    if cast is not None and info.dtype.kind == "f":
                        rows = (RaggedArray(rows.values.astype(cast), rows.offsets,
                                            validate=False)
                                if isinstance(rows, RaggedArray) else rows.astype(cast))
                    target.add(var, rows, ph)
                    bar.update(rows.nbytes)
                if info.length == 0:
                    _create_empty(dst, data_id, var, info, ph, cast)
                    target.written.add((var, ph))
                out.setdefault(var, ImportedVar(
                    var, var, info.ragged,
                    (None, *info.row_shape) if info.ragged else info.row_shape,
                    cast if cast is not None and info.dtype.kind == "f" else info.dtype,
                    info.dtype))
        attrs = {k: v for k, v in db.get_attrs(data_id).items() if k not in _OWN_ATTRS}
        if attrs:
            merged = target.db.get_attrs(data_id)
            merged.update(attrs)
            target.db.set_attrs(data_id, merged)
        if do_compile:
            dst.compile()
    logger.info("copied data_id %r: %s rows per phase, vars %s", data_id, sizes, every)
    return ImportResult(data_id, (src.db.describe(),), tuple(out.values()), sizes)


def _create_empty(dst: Any, data_id: str, var: str, info: Any, phase: str,
                  cast: np.dtype | None) -> None:
    """A var with no rows (kept so the copy has the same vars; ``add_data`` of no rows
    creates nothing, so the backend appends them)."""
    dtype = cast if cast is not None and info.dtype.kind == "f" else info.dtype
    empty = np.empty((0, *info.row_shape), dtype)
    if info.ragged:
        dst.db.append(data_id, phase, var, RaggedArray(empty, np.zeros(1, np.int64)))
    else:
        dst.db.append(data_id, phase, var, empty)
