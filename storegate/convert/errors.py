"""Errors raised by the converters in :mod:`storegate.convert`.

Every converter error is a :class:`~storegate.errors.StoregateError` that also inherits the
builtin exception a caller would catch for the same problem (``FileNotFoundError`` for a
missing file, ``ValueError`` for a file of the wrong layout, ``TypeError`` for a column type
that cannot become a var). Each names the source file in its message and keeps it in
:attr:`ConversionError.path`. A missing optional library (pyarrow) raises
:class:`storegate.errors.MissingDependencyError` (an ``ImportError``), re-exported here.

Examples
--------
>>> from storegate.convert import import_kinoml_parquet
>>> from storegate import StoreGate
>>> try:
...     import_kinoml_parquet("no/such/file.parquet", StoreGate(data_id="d"))
... except FileNotFoundError as err:        # also a SourceNotFoundError, a StoregateError
...     print(type(err).__name__, err.path)
SourceNotFoundError no/such/file.parquet
"""

from __future__ import annotations

from ..errors import MissingDependencyError, StoregateError

__all__ = [
    "ConversionError",
    "DestinationExistsError",
    "MissingDependencyError",
    "SourceFormatError",
    "SourceNotFoundError",
    "UnsupportedFieldError",
]


class ConversionError(StoregateError):
    """Base class of the converter errors.

    Parameters
    ----------
    message
        What went wrong, naming the file, and how to fix it.
    path
        The source file (or directory) the error is about, if any.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class SourceNotFoundError(ConversionError, FileNotFoundError):
    """The source file or directory does not exist (or a directory holds no such files)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message, path)
        self.filename = path


class DestinationExistsError(ConversionError, FileExistsError):
    """The destination of a conversion exists (pass ``overwrite=True`` to replace it)."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message, path)
        self.filename = path


class SourceFormatError(ConversionError, ValueError):
    """The source is not a readable file of the expected layout (not Parquet, not one record
    per item, no label field, damaged, or several files whose schemas disagree)."""


class UnsupportedFieldError(ConversionError, TypeError, ValueError):
    """A field whose type cannot become a var: strings, unions, nested records, missing values
    (nulls), or items whose shape varies beyond their first axis."""
