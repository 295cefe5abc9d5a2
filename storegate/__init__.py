"""storegate: a phase-aware data store for machine learning.

Users add named arrays ("vars") to a store, split into phases (``train``, ``valid``, ``test``)
and read them back with ``sg["train"][("x", "y")][idx]``. Storage is pluggable (see
:func:`list_backends`). ``import storegate`` imports only numpy; every other library loads when a
backend or layer that needs it is first used.

Examples
--------
>>> import numpy as np
>>> import storegate
>>> sg = storegate.StoreGate("numpy", data_id="demo")
>>> sg.add_data(("x", "y"), np.arange(20).reshape(10, 2), phase=(0.8, 0.1, 0.1))
>>> sg["train"][("x", "y")][[0, 7]].tolist()
[[0, 1], [14, 15]]
"""

from .backends import Backend, VarInfo, get_backend, list_backends, register_backend
from .errors import (
    BackendImportError,
    BackendNotFoundError,
    CorruptStoreError,
    DataIdNotFoundError,
    DtypeError,
    InconsistentLengthError,
    IndexOutOfRangeError,
    InvalidArgumentError,
    InvalidIndexError,
    InvalidNameError,
    InvalidPhaseError,
    MissingDependencyError,
    NoDataIdError,
    ReadOnlyError,
    SelectionError,
    ShapeMismatchError,
    StoreChangedError,
    StoregateError,
    StoreLockedError,
    StoreNotFoundError,
    UnknownPhaseError,
    UnsupportedOperationError,
    VarExistsError,
    VarNotFoundError,
)
from .gate import StoreGate
from .phases import PHASES
from .ragged import RaggedArray
from .views import View

__version__ = "0.1.0.dev0"

__all__ = [
    "PHASES",
    "Backend",
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
    "RaggedArray",
    "ReadOnlyError",
    "SelectionError",
    "ShapeMismatchError",
    "StoreChangedError",
    "StoreGate",
    "StoreLockedError",
    "StoreNotFoundError",
    "StoregateError",
    "UnknownPhaseError",
    "UnsupportedOperationError",
    "VarExistsError",
    "VarInfo",
    "VarNotFoundError",
    "View",
    "__version__",
    "get_backend",
    "list_backends",
    "register_backend",
]
