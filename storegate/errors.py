"""The exceptions storegate raises.

Every error a user can cause is a :class:`StoregateError`. Each subclass also inherits the
builtin exception that code written for multiml (or for plain numpy) already catches, so
``except ValueError`` keeps working where multiml raised ``ValueError`` and ``except KeyError``
where a mapping lookup failed.

Messages name the offending value, list the valid choices where there are few, and say how to
fix the call.

Examples
--------
>>> import storegate
>>> try:
...     storegate.StoreGate(backend="nmupy")
... except KeyError as err:          # also a StoregateError and a NotImplementedError
...     print(err)  # doctest: +ELLIPSIS
Backend: 'nmupy' is not supported in the storegate (...); did you mean 'numpy'? installed ...
"""

from __future__ import annotations

__all__ = [
    "BackendImportError",
    "BackendNotFoundError",
    "CorruptStoreError",
    "DataIdNotFoundError",
    "DtypeError",
    "InconsistentLengthError",
    "IndexOutOfRangeError",
    "InvalidArgumentError",
    "InvalidIndexError",
    "InvalidNameError",
    "InvalidPhaseError",
    "MissingDependencyError",
    "NoDataIdError",
    "ReadOnlyError",
    "SelectionError",
    "ShapeMismatchError",
    "StoreChangedError",
    "StoreLockedError",
    "StoreNotFoundError",
    "StoregateError",
    "UnknownPhaseError",
    "UnsupportedOperationError",
    "VarExistsError",
    "VarNotFoundError",
]


class StoregateError(Exception):
    """Base class of every error storegate raises on bad input or a bad store."""

    def __str__(self) -> str:
        # KeyError would quote the whole message; every storegate error prints it plainly.
        return Exception.__str__(self)


class InvalidArgumentError(StoregateError, ValueError, TypeError):
    """An argument of the wrong type or value that no more specific error covers (``var_names``
    that is not a str/tuple/list, ``num_classes < 1``, ``backend_args`` a backend does not take).
    multiml raised ``ValueError`` here; Python itself would raise ``TypeError`` for unknown
    keyword arguments, so both are inherited."""


class InvalidNameError(StoregateError, ValueError):
    """A data_id or var name is not allowed (empty, a path separator, NUL, ``..``, too long)."""


class NoDataIdError(StoregateError, ValueError):
    """An operation needs a data_id and none was set (``set_data_id`` or ``data_id=``)."""


class DataIdNotFoundError(StoregateError, KeyError, ValueError):
    """The data_id does not exist in the store."""


class InvalidPhaseError(StoregateError, ValueError):
    """A phase spec is malformed: fractions not summing to 1, counts not summing to N, ..."""


class UnknownPhaseError(InvalidPhaseError, KeyError):
    """A phase name that is none of ``train``, ``valid``, ``test`` (or ``all``)."""


class VarNotFoundError(StoregateError, KeyError, ValueError):
    """A var name that does not exist in the requested data_id and phase."""


class VarExistsError(StoregateError, ValueError):
    """A var that must be new already exists (``create_empty``)."""


class ShapeMismatchError(StoregateError, ValueError):
    """Data whose shape does not fit the var or the call (trailing shape, length, M vars)."""


class DtypeError(StoregateError, TypeError, ValueError):
    """A dtype that cannot be stored (object) or cannot be cast without losing values."""


class InconsistentLengthError(StoregateError, ValueError):
    """Vars of one phase have different lengths, so the phase cannot be compiled."""


class InvalidIndexError(StoregateError, IndexError, TypeError, ValueError):
    """An index of a type or form storegate does not accept (float, 2-D, wrong mask length).

    Also a ``ValueError``: multiml raised ``ValueError('Un supported index: ...')`` for index
    types it did not take."""


class IndexOutOfRangeError(InvalidIndexError):
    """An index that points past the end (or before the start) of a phase."""


class ReadOnlyError(StoregateError, PermissionError):
    """A write to a store opened read-only (``mode='r'``)."""


class BackendNotFoundError(StoregateError, KeyError, NotImplementedError):
    """An unknown backend name. Subclasses ``NotImplementedError`` as multiml raised that."""


class BackendImportError(StoregateError, ImportError):
    """A backend whose module (or a library it needs) cannot be imported."""


class MissingDependencyError(StoregateError, ImportError):
    """An optional library a feature needs is not installed (the message says what to install)."""


class UnsupportedOperationError(StoregateError, ValueError):
    """An operation the chosen backend does not provide (multiml raised ``ValueError``)."""


class SelectionError(StoregateError, ValueError):
    """A ``[]`` selection, ``len`` or ``in`` used without the phase or var names it needs."""


class StoreNotFoundError(StoregateError, FileNotFoundError):
    """A store location that does not exist (or holds no store) where one was required."""


class CorruptStoreError(StoregateError, ValueError):
    """A store whose files or metadata are damaged, foreign or contradict each other."""


class StoreLockedError(StoregateError, PermissionError):
    """A write to a store another writer holds (storegate allows one writing process per store;
    readers are never blocked). The message names the holder (pid, host, since when)."""


class StoreChangedError(StoregateError, OSError):
    """A read found the store changed underneath it by a concurrent writer (a file it had
    listed was replaced or removed). Retrying the read, or reopening the store, sees the new
    committed state; it is never a sign of damage."""
