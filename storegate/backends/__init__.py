"""Storage backends: the :class:`Backend` contract and the registry that finds them.

Built-in backends live in modules named ``*_backend.py`` and are loaded on first use, so
importing this package imports neither zarr nor any plugin.

Examples
--------
>>> from storegate.backends import list_backends
>>> "numpy" in list_backends()
True
"""

from .base import Backend, VarInfo
from .registry import (
    ENTRY_POINT_GROUP,
    BackendPluginWarning,
    BackendSpec,
    backend_specs,
    get_backend,
    list_backends,
    load_all,
    refresh,
    register_backend,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Backend",
    "BackendPluginWarning",
    "BackendSpec",
    "VarInfo",
    "backend_specs",
    "get_backend",
    "list_backends",
    "load_all",
    "refresh",
    "register_backend",
]
