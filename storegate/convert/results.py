"""What a conversion did: the result objects every importer and exporter returns.

Examples
--------
>>> import numpy as np
>>> from storegate.convert.results import ImportedVar, ImportResult
>>> v = ImportedVar("x", "x", False, (3,), np.dtype("f4"), np.dtype("f8"))
>>> r = ImportResult("d", ("a.npz",), (v,), {"train": 5, "valid": 0, "test": 0})
>>> r.var_names, r.rows
(['x'], 5)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ExportResult", "ImportResult", "ImportedVar"]


@dataclass(frozen=True)
class ImportedVar:
    """One var written by an import.

    Attributes
    ----------
    name
        The var name in the store.
    field
        The source field, column, NPZ key (pattern) or dataset path it came from.
    ragged
        Whether the var is ragged (items' first axis varies).
    shape
        Per-row shape as ``get_var_shapes`` reports it: ``(None, *k)`` for a ragged var.
    dtype
        The stored dtype.
    source_dtype
        The dtype in the file (before ``dtype=`` casting).
    transposed
        Whether the items were stored transposed (``transpose=``).
    """

    name: str
    field: str
    ragged: bool
    shape: tuple[int | None, ...]
    dtype: np.dtype
    source_dtype: np.dtype
    transposed: bool = False


@dataclass(frozen=True)
class ImportResult:
    """What an importer did.

    Attributes
    ----------
    data_id
        The data_id the vars were written to.
    files
        The source files read, in row order.
    vars
        The vars written, in store order.
    sizes
        Rows written per phase (``train``, ``valid``, ``test``).
    skipped
        Source rows that no phase took (index arrays that do not cover every row).
    """

    data_id: str
    files: tuple[str, ...]
    vars: tuple[ImportedVar, ...]
    sizes: dict[str, int]
    skipped: int = 0

    @property
    def var_names(self) -> list[str]:
        """Names of the vars written, in store order."""
        return [v.name for v in self.vars]

    @property
    def rows(self) -> int:
        """Rows written over all phases."""
        return sum(self.sizes.values())


@dataclass(frozen=True)
class ExportResult:
    """What an exporter did.

    Attributes
    ----------
    path
        The file written.
    data_id
        The data_id exported.
    phases
        The phases exported, in file order.
    var_names
        The vars exported, in store order.
    sizes
        Rows written per phase.
    """

    path: str
    data_id: str
    phases: tuple[str, ...]
    var_names: tuple[str, ...]
    sizes: dict[str, int]

    @property
    def rows(self) -> int:
        """Rows written over all phases."""
        return sum(self.sizes.values())
