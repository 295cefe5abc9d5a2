"""Import kinoml's Parquet datasets into a StoreGate.

kinoml (``DatasetProvider.to_awkward`` in its featurization notebooks) writes one Parquet file
per dataset with awkward: ``ak.to_parquet(ak.zip([*X, y], depth_limit=1), path)``. That is one
*record per item* (system) with positional fields ``"0" .. "n"``; the **last field is the
label** ``y`` (float32, one number per item) and every other field is one feature "column".
Because the features went through ``ak.from_iter``, each has type ``var * var * float64``: no
dimension is marked regular and float32 features were upcast to float64. In the file, the
tuple record is a single struct column named ``""``; records with named fields (``ak.zip`` of
a dict) are plain top-level columns. Split indices are not stored.

:func:`import_kinoml_parquet` turns each feature field into a var: a **ragged** var (flat
values plus offsets, see :mod:`storegate.ragged`) when the items' first axis varies, a regular
``(N, *k)`` var when every item has the same shape. Only the first axis of an item may vary;
all deeper axes must be constant over the file. Items of shape ``(k, n_i)`` that vary along
their last axis (kinoml's unpadded one-hot ``(53, L)``, an edge index ``(2, E)``) are stored
transposed, as rows ``(n_i, k)``, when their field is named in ``transpose=``. The label
becomes a var too.

Reading streams record batches of ``batch_rows`` rows (Parquet pages are decoded batch by
batch, so memory stays bounded even for kinoml's files, which are one big row group), and all
work inside a batch is vectorised over the list offsets: there is no Python loop per item.
The file is read once: a field of variable-length lists whose first axis varies within the
first batch is ragged; one whose first batch is uniform is taken as regular, and if a later
batch contradicts that, the import deletes what it wrote, scans the shapes and starts again.
A file that cannot be imported leaves the store as it was.

The streaming engine is shared with :func:`storegate.convert.parquet.import_parquet` (which
recognises this layout by itself), and :func:`storegate.convert.parquet.export_parquet` with
``layout='kinoml'`` writes a store back in this layout.

Examples
--------
>>> import os, tempfile
>>> import awkward as ak, numpy as np
>>> from storegate import StoreGate
>>> from storegate.convert import import_kinoml_parquet
>>> rng = np.random.default_rng(0)
>>> systems = [rng.standard_normal((n, 16)) for n in (12, 40, 25, 33)]   # ragged feature
>>> fingerprints = [rng.integers(0, 2, 8) for _ in range(4)]              # same shape each
>>> y = np.array([6.1, 7.3, 5.0, 8.2], dtype="float32")
>>> path = os.path.join(tempfile.mkdtemp(), "kinoml.parquet")
>>> X = [ak.from_iter(systems), ak.from_iter(fingerprints)]               # as kinoml does
>>> _ = ak.to_parquet(ak.zip([*X, ak.from_numpy(y)], depth_limit=1), path)
>>> sg = StoreGate("numpy")
>>> result = import_kinoml_parquet(path, sg, data_id="kinase", phase=(2, 1, 1),
...                                dtype="float32")
>>> [(v.name, v.ragged, v.shape, str(v.dtype)) for v in result.vars]
[('X_a0', True, (None, 16), 'float32'), ('X_a1', False, (8,), 'int64'), ('y', False, (), 'float32')]
>>> result.sizes
{'train': 2, 'valid': 1, 'test': 1}
>>> sg.get_data("X_a0", "train", 1, ragged_as="list").shape     # one item: (n_i, 16)
(40, 16)
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import (
    InvalidArgumentError,
    InvalidNameError,
)
from ..names import check_name
from ..progress import Progress, progress_bar
from .errors import SourceFormatError, UnsupportedFieldError
from .parquet import (
    _analyze,
    _check_batch_rows,
    _default_batch_rows,
    _describe_layout,
    _Field,
    _imported,
    _open_all,
    _phase_plan,
    _phase_source,
    _pyarrow,
    _run_import,
    _source_files,
)
from .phase_plan import PhasePlan, plan_phases
from .results import ImportedVar, ImportResult
from .target import ImportTarget, float_cast

__all__ = ["ImportedVar", "KinomlImport", "import_kinoml_parquet"]

_HINT = ("; kinoml datasets are written with ak.to_parquet(ak.zip([*X, y], depth_limit=1), "
         "path)")


# ---------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class KinomlImport(ImportResult):
    """What :func:`import_kinoml_parquet` did: an :class:`~storegate.convert.ImportResult`
    whose vars are the features in field order, then the label."""

    @property
    def feature_names(self) -> list[str]:
        """Names of the feature vars (every var but the label), in field order."""
        return [v.name for v in self.vars[:-1]]

    @property
    def label_name(self) -> str:
        """Name of the label var."""
        return self.vars[-1].name


# ---------------------------------------------------------------------------------- schema
def _fields(pa: Any, pf: Any, path: str, phase_field: str | None) -> list[_Field]:
    schema = pf.schema_arrow
    if len(schema) == 1 and pa.types.is_struct(schema.field(0).type):
        # awkward writes a record (tuple) array as one struct column, named "" for tuples
        top = schema.field(0)
        children = [top.type.field(i) for i in range(top.type.num_fields)]
        entries = [(c.name, f"{top.name}.{c.name}", c.type) for c in children]
    else:
        entries = [(f.name, f.name, f.type) for f in schema]
    advice = ("Convert or drop that field before writing the file (kinoml: featurize to "
              "numeric arrays).")
    return [_phase_source(pa, name, column, typ, path) if name == phase_field
            else _analyze(pa, name, column, typ, path, advice=advice)
            for name, column, typ in entries]


# ---------------------------------------------------------------------------------- names
def _var_names(fields: list[_Field], var_names: Any, label_name: str, tuple_layout: bool,
               path: str) -> None:
    features = fields[:-1]
    if var_names is None:
        names = [f"X_a{i}" if tuple_layout else f.name for i, f in enumerate(features)]
    elif isinstance(var_names, Mapping):
        unknown = [k for k in var_names if k not in {f.name for f in features}]
        if unknown:
            raise InvalidArgumentError(
                f"var_names maps fields {unknown} that are not feature fields of {path!r}; "
                f"its feature fields are {[f.name for f in features]} (the last field, "
                f"{fields[-1].name!r}, is the label: name it with label_name).")
        names = [str(var_names.get(f.name, f"X_a{i}" if tuple_layout else f.name))
                 for i, f in enumerate(features)]
    elif isinstance(var_names, Sequence) and not isinstance(var_names, str | bytes):
        names = list(var_names)
        if len(names) != len(features):
            raise InvalidArgumentError(
                f"var_names has {len(names)} names but {path!r} has {len(features)} feature "
                f"fields ({[f.name for f in features]}; the last field is the label).")
    else:
        raise InvalidArgumentError(
            f"var_names must be None, a list with one name per feature field or a mapping "
            f"{{field: name}}, got {var_names!r}.")
    names.append(label_name)
    for f, name in zip(fields, names, strict=True):
        f.var = check_name(name)
    seen: set[str] = set()
    for f in fields:
        if f.var in seen:
            raise InvalidNameError(
                f"var name {f.var!r} is used twice (fields and label need distinct names); "
                "pass var_names or label_name.")
        seen.add(f.var)


def _mark_transposed(fields: list[_Field], transpose: Any, path: str) -> None:
    if isinstance(transpose, str) or not isinstance(transpose, Collection):
        raise InvalidArgumentError(
            f"transpose must be a collection of field or var names, e.g. ['0'], got "
            f"{transpose!r}.")
    features = fields[:-1]
    for name in transpose:
        match = [f for f in features if name in (f.name, f.var)]
        if not match:
            raise InvalidArgumentError(
                f"transpose names {name!r}, which is not a feature field of {path!r}; its "
                f"feature fields are {[f.name for f in features]} (vars "
                f"{[f.var for f in features]}).")
        f = match[0]
        if len(f.levels) != 2:
            raise UnsupportedFieldError(
                f"transpose=[{name!r}]: the items of field {f.name!r} in {path!r} have "
                f"{len(f.levels)} axes; only 2-D items (k, n_i) can be transposed.", path)
        f.transposed = True


# ---------------------------------------------------------------------------------- main
def import_kinoml_parquet(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    storegate: Any,
    data_id: str | None = None,
    var_names: Sequence[str] | Mapping[str, str] | None = None,
    label_name: str = "y",
    phase: Any = None,
    dtype: Any = None,
    batch_rows: int | None = None,
    *,
    phase_field: str | None = None,
    transpose: Collection[str] = (),
    do_compile: bool = True,
) -> KinomlImport:
    """Import a kinoml Parquet dataset (one record per item, the last field the label).

    Each feature field becomes a var named ``X_a0``, ``X_a1``, ... (the names of kinoml's NPZ
    ``X_s{i}_a{j}_`` members; records with named fields keep their names): a ragged var when
    the items' first axis varies over the file, a regular var when every item has the same
    shape. The label becomes the var ``label_name``. Rows keep the file order.

    Parameters
    ----------
    path
        A ``.parquet`` file written by kinoml (``ak.to_parquet``), a directory of such files
        (read in name order, as one dataset) or a list of files.
    storegate
        The :class:`~storegate.StoreGate` to write into (any backend).
    data_id
        The data_id to write to; it becomes the gate's current data_id (created if needed).
        ``None``: the gate's current data_id.
    var_names
        Names of the feature vars: a list with one name per feature field, or a mapping
        ``{field name: var name}`` (unmapped fields keep their default names).
    label_name
        Name of the label var (the last field). Default ``'y'``.
    phase
        Where rows go. ``None``: all to ``'train'``. A phase name: all there. Fractions
        ``(0.8, 0.1, 0.1)`` or counts ``(800, 100, 100)``: consecutive rows, cut as
        ``add_data`` cuts them. A numpy array (or list of str) with one label per row
        (``'train'``, ``'valid'``/``'val'``, ``'test'`` or 0, 1, 2). A mapping of row indices or
        bool masks ``{'train': idx, 'valid': idx, 'test': idx}`` (kinoml's ``idx_train``,
        ``idx_val``, ``idx_test``; rows in none of them are skipped); rows keep file order.
    dtype
        Cast every floating-point field (features and label) to this float dtype, e.g.
        ``'float32'`` to undo kinoml's float64 upcast. ``None`` keeps the file's dtypes.
    batch_rows
        Rows decoded at a time (bounds memory). ``None``: about 32 MiB of data per batch,
        estimated from the file's metadata.
    phase_field
        Name of a field of the file that holds each row's phase label (strings or 0/1/2).
        That field is not imported as a var. Give either ``phase`` or ``phase_field``.
    transpose
        Feature fields (by field or var name) whose items are 2-D arrays ``(k, n_i)`` varying
        along their *last* axis, such as kinoml's unpadded one-hot features ``(53, L)`` or an
        edge index ``(2, E)``: they are stored transposed, as rows of shape ``(n_i, k)``.
    do_compile
        Compile the data_id afterwards (checks that every phase's vars have equal lengths).

    Returns
    -------
    KinomlImport
        The data_id, the files, each var written (name, ragged, per-row shape, dtype) and the
        rows per phase.

    Raises
    ------
    SourceNotFoundError
        ``path`` does not exist (a ``FileNotFoundError``).
    SourceFormatError
        Not a Parquet file, fewer than two fields (features and a label), no rows, a damaged
        file, or several files whose columns disagree (a ``ValueError``).
    UnsupportedFieldError
        A field of strings, unions or nested records, with missing values, or whose items vary
        beyond their first axis (without ``transpose=``), or a transposed field whose items
        are not 2-D arrays (a ``TypeError`` and ``ValueError``).
    VarExistsError
        A target var already exists in the data_id; delete it first or choose other names.
    InvalidPhaseError, InvalidArgumentError, InvalidNameError, MissingDependencyError
        Bad ``phase``/``phase_field``, bad arguments or names, pyarrow not installed.

    Notes
    -----
    A failed import leaves the store as it was. The schema, the arguments, the phase spec and
    the target (no existing var of the same name, matching phase lengths) are checked before
    anything is written. Problems found while reading the data (missing values, an item deep
    in the file whose inner axis differs, a damaged page) and failures of the writes themselves
    (a full disk, an interrupt) delete the vars the import created before the error
    propagates (and the data_id too if the import created it and the gate had another data_id
    before).

    The source is decoded once, batch by batch, with no Python loop per item; only when a field
    taken as regular from the first batch turns out ragged later is the import restarted after
    one shape pass over the variable-length columns.

    Examples
    --------
    >>> import os, tempfile
    >>> import awkward as ak, numpy as np
    >>> from storegate import StoreGate
    >>> path = os.path.join(tempfile.mkdtemp(), "d.parquet")
    >>> X0 = ak.from_iter([np.ones((3, 2)), np.zeros((1, 2)), np.ones((2, 2))])
    >>> y = ak.from_numpy(np.array([0.5, 1.5, 2.5], dtype="float32"))
    >>> _ = ak.to_parquet(ak.zip([X0, y], depth_limit=1), path)
    >>> sg = StoreGate("numpy", data_id="d")
    >>> res = import_kinoml_parquet(path, sg, phase=np.array(["train", "test", "train"]))
    >>> res.sizes, res.feature_names, res.label_name
    ({'train': 2, 'valid': 0, 'test': 1}, ['X_a0'], 'y')
    >>> sg.get_data("y", "train")
    array([0.5, 2.5], dtype=float32)
    >>> [item.shape for item in sg.get_data("X_a0", "train", ragged_as="list")]
    [(3, 2), (2, 2)]
    """
    return _import_kinoml(path, storegate, data_id, var_names, label_name, phase, dtype,
                         batch_rows, phase_field=phase_field, transpose=transpose,
                         do_compile=do_compile)


def _import_kinoml(
    path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    storegate: Any,
    data_id: str | None = None,
    var_names: Sequence[str] | Mapping[str, str] | None = None,
    label_name: str = "y",
    phase: Any = None,
    dtype: Any = None,
    batch_rows: int | None = None,
    *,
    phase_field: str | None = None,
    transpose: Collection[str] = (),
    do_compile: bool = True,
    progress: Progress = None,
    handles: list[tuple[str, Any]] | None = None,
) -> KinomlImport:
    """:func:`import_kinoml_parquet` with a progress bar and (from
    :func:`~storegate.convert.import_parquet`) files already opened."""
    target = ImportTarget(storegate, data_id)
    if not isinstance(label_name, str):
        raise InvalidNameError(f"label_name must be a str, got {label_name!r}.")
    cast = float_cast(dtype)
    _check_batch_rows(batch_rows)
    if phase_field is not None and phase is not None:
        raise InvalidArgumentError(
            "give either phase= or phase_field=, not both (phase_field reads each row's phase "
            "from the file).")

    pa, pq = _pyarrow()
    if handles is None:
        handles = _open_all(pa, pq, _source_files(path), _HINT)
    files = [p for p, _ in handles]
    first_path, first = handles[0]
    fields = _fields(pa, first, first_path, phase_field)
    struct = len(first.schema_arrow) == 1 and pa.types.is_struct(first.schema_arrow.field(0).type)

    phase_src: _Field | None = None
    if phase_field is not None:
        matches = [f for f in fields if f.name == phase_field]
        if not matches:
            raise InvalidArgumentError(
                f"phase_field {phase_field!r} is not a field of {first_path!r}; its fields "
                f"are {[f.name for f in fields]}.")
        phase_src = matches[0]
        fields.remove(phase_src)
    if len(fields) < 2:
        raise SourceFormatError(
            f"{first_path!r} is not in kinoml's layout: it has {len(fields)} field(s) "
            f"({_describe_layout(first)}), but a kinoml dataset has one record per item with "
            "fields '0'..'n': at least one feature and the label (last).", first_path)
    tuple_layout = struct and all(f.name == str(i) for i, f in enumerate(fields))
    _var_names(fields, var_names, label_name, tuple_layout, first_path)
    _mark_transposed(fields, transpose, first_path)

    n = sum(pf.metadata.num_rows for _, pf in handles)
    if n == 0:
        raise SourceFormatError(f"{first_path!r} holds no rows; there is nothing to import.",
                                first_path)
    plan: PhasePlan = plan_phases(phase, n) if phase_src is None else PhasePlan()
    rows = int(batch_rows) if batch_rows is not None else _default_batch_rows(handles, n)
    if phase_src is not None:  # phases from a field of the file: that column is read first
        plan = _phase_plan(pa, handles, phase_src, struct, rows, f"phase_field {phase_field!r}")
    sizes = plan.sizes()

    # nothing may be overwritten or appended to: the import creates its vars
    target.check_new([f.var for f in fields], sizes)
    with progress_bar(progress, total=n, unit="rows",
                      desc=f"import {os.path.basename(first_path)}") as bar:
        _run_import(target, storegate, pa, handles, fields, struct, rows, plan, cast,
                    do_compile, bar)
    return KinomlImport(target.data_id, tuple(files), _imported(fields, cast), sizes,
                        n - sum(sizes.values()))
