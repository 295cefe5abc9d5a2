"""Discovery of backends through the entry-point group ``storegate.backends``.

Built-in backends are registered in storegate's own ``pyproject.toml`` exactly as a third party
registers a plugin::

    [project.entry-points."storegate.backends"]
    hdf5 = "storegate_hdf5:HDF5Backend"

Discovery reads the entry points (package metadata only; no plugin is imported), caches the
result, and imports a backend the first time it is used. An unknown name raises
:class:`~storegate.errors.BackendNotFoundError` listing the installed names with a "did you
mean"; a plugin that fails to import raises :class:`~storegate.errors.BackendImportError` when
it is asked for, and only warns (:class:`BackendPluginWarning`) when backends are merely listed.

Examples
--------
>>> from storegate.backends import list_backends
>>> {"numpy", "zarr"} <= set(list_backends())
True
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import threading
import warnings
from dataclasses import dataclass
from typing import Any

from ..errors import BackendImportError, BackendNotFoundError
from .base import Backend

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendPluginWarning",
    "BackendSpec",
    "backend_specs",
    "get_backend",
    "guess_backend",
    "list_backends",
    "refresh",
    "register_backend",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "storegate.backends"

# Used only when storegate runs from a source tree that was never installed (no metadata):
# the same targets as the entry points in pyproject.toml.
_BUILTIN_FALLBACK = {
    "numpy": "storegate.backends.numpy_backend:NumpyBackend",
    "zarr": "storegate.backends.zarr_backend:ZarrBackend",
    "hybrid": "storegate.backends.hybrid_backend:HybridBackend",
    "parquet": "storegate.backends.parquet_backend:ParquetBackend",
}

# What to install when a backend's module needs a library that is missing.
_INSTALL_HINTS = {
    "zarr": "pip install 'zarr>=3.1' numcodecs",
    "numcodecs": "pip install numcodecs",
    "pyarrow": "pip install 'storegate[parquet]'",
    "awkward": "pip install 'storegate[parquet]'",
    "h5py": "pip install storegate-hdf5",
    "fsspec": "pip install fsspec",
    "s3fs": "pip install 'storegate[s3]'",
}


class BackendPluginWarning(UserWarning):
    """A registered backend plugin could not be imported."""


@dataclass(frozen=True)
class BackendSpec:
    """One registered backend: its name, target and the distribution that provides it.

    Examples
    --------
    >>> spec = backend_specs()["numpy"]
    >>> spec.target
    'storegate.backends.numpy_backend:NumpyBackend'
    """

    name: str
    target: str
    distribution: str | None
    version: str | None

    def describe(self) -> str:
        """``'name (distribution version)'`` for messages."""
        dist = f"{self.distribution} {self.version}" if self.distribution else "no distribution"
        return f"{self.name!r} ({dist})"


_lock = threading.Lock()
_specs: dict[str, BackendSpec] | None = None
_loaded: dict[str, type[Backend]] = {}
#: Backends registered in this process with :func:`register_backend` (spec, class if given).
_runtime: dict[str, tuple[BackendSpec, type[Backend] | None]] = {}


def refresh() -> None:
    """Forget cached discovery results (call after installing or removing a plugin).

    Examples
    --------
    >>> refresh()
    """
    global _specs
    with _lock:
        _specs = None
        _loaded.clear()
        _loaded.update({n: cls for n, (_, cls) in _runtime.items() if cls is not None})
    importlib.invalidate_caches()


def register_backend(name: str, target: type[Backend] | str, *, overwrite: bool = False) -> None:
    """Register a backend in this process, without an entry point (fsspec's
    ``register_implementation`` idea): for scripts, notebooks and tests.

    Parameters
    ----------
    name
        The name to open it by (``StoreGate(backend=name)``): letters, digits, ``_``, ``-``
        and ``.``.
    target
        A :class:`~storegate.backends.Backend` subclass, or its import path
        ``'package.module:Class'`` (imported on first use, as entry points are).
    overwrite
        Replace a backend already registered under ``name`` (else that is an error).

    Notes
    -----
    The registration lives in this process only (and in processes forked from it); worker
    processes started with ``spawn`` must register again, or the backend must be installed
    with an entry point in the group ``storegate.backends`` (see the backend-author guide).

    Examples
    --------
    >>> from storegate.backends.numpy_backend import NumpyBackend
    >>> class Scratch(NumpyBackend):
    ...     "An in-memory backend under another name."
    >>> register_backend("scratch", Scratch)
    >>> get_backend("scratch") is Scratch, "scratch" in list_backends()
    (True, True)
    """
    import re

    from ..errors import InvalidArgumentError

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise InvalidArgumentError(
            f"a backend name is letters, digits, '_', '-' and '.', got {name!r}.")
    cls: type[Backend] | None = None
    if isinstance(target, str):
        module, sep, attr = target.partition(":")
        if not (module and sep and attr):
            raise InvalidArgumentError(
                f"target {target!r} is not an import path 'package.module:Class'.")
        spec = BackendSpec(name, target, None, None)
    elif isinstance(target, type) and issubclass(target, Backend):
        cls = target
        spec = BackendSpec(name, f"{target.__module__}:{target.__qualname__}", None, None)
    else:
        raise InvalidArgumentError(
            f"target must be a storegate.backends.Backend subclass or an import path "
            f"'package.module:Class', got {target!r}.")
    existing = backend_specs().get(name)
    if existing is not None and not overwrite and existing.target != spec.target:
        raise InvalidArgumentError(
            f"a backend {existing.describe()} is already registered as {name!r} "
            f"({existing.target}); pass overwrite=True to replace it, or choose another name.")
    with _lock:
        _runtime[name] = (spec, cls)
        if _specs is not None:
            _specs[name] = spec
        _loaded.pop(name, None)
        if cls is not None:
            _loaded[name] = cls
    logger.info("storegate backend %r registered at runtime (%s)", name, spec.target)


def _discover() -> dict[str, BackendSpec]:
    specs: dict[str, BackendSpec] = {}
    from importlib import metadata  # about 17 ms: only when backends are first looked up

    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        version = dist.version if dist is not None else None
        spec = BackendSpec(ep.name, ep.value, dist_name, version)
        if ep.name in specs and specs[ep.name].target != ep.value:
            warnings.warn(
                f"storegate backend {ep.name!r} is registered twice: by "
                f"{specs[ep.name].describe()} and by {spec.describe()}; using the first. "
                "Uninstall one of the two distributions.",
                BackendPluginWarning,
                stacklevel=3,
            )
            continue
        specs.setdefault(ep.name, spec)
    for name, target in _BUILTIN_FALLBACK.items():
        specs.setdefault(name, BackendSpec(name, target, None, None))
    specs.update({name: spec for name, (spec, _) in _runtime.items()})
    return specs


def backend_specs() -> dict[str, BackendSpec]:
    """All registered backends by name, without importing any of them.

    Examples
    --------
    >>> "zarr" in backend_specs()
    True
    """
    global _specs
    with _lock:
        if _specs is None:
            _specs = _discover()
        return dict(_specs)


def list_backends() -> list[str]:
    """Names of the registered backends, sorted. Imports none of them.

    Examples
    --------
    >>> "numpy" in list_backends()
    True
    """
    return sorted(backend_specs())


def _import_target(spec: BackendSpec) -> type[Backend]:
    module_name, _, attr = spec.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        missing = getattr(err, "name", None) or ""
        hint = _INSTALL_HINTS.get(missing.partition(".")[0])
        fix = f" Install it with: {hint}" if hint else ""
        raise BackendImportError(
            f"storegate backend {spec.describe()} could not be imported: {err}.{fix}"
        ) from err
    except Exception as err:  # a plugin may fail in any way while importing
        raise BackendImportError(
            f"storegate backend {spec.describe()} failed while importing {module_name!r}: "
            f"{type(err).__name__}: {err}. Reinstall or uninstall that distribution."
        ) from err
    obj: Any = module
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part, None)
    if not (isinstance(obj, type) and issubclass(obj, Backend)):
        raise BackendImportError(
            f"storegate backend {spec.describe()} points to {spec.target!r}, which is not a "
            "storegate.backends.Backend subclass."
        )
    return obj


def get_backend(name: str) -> type[Backend]:
    """The backend class registered under ``name``, imported on first use.

    Parameters
    ----------
    name
        A registered backend name (see :func:`list_backends`).

    Returns
    -------
    type[Backend]

    Raises
    ------
    BackendNotFoundError
        For names nobody registered (with a "did you mean").
    BackendImportError
        When the backend's module cannot be imported.

    Examples
    --------
    >>> get_backend("numpy").__name__
    'NumpyBackend'
    """
    if name in _loaded:
        return _loaded[name]
    specs = backend_specs()
    if not isinstance(name, str) or name not in specs:
        known = sorted(specs)
        close = difflib.get_close_matches(str(name), known, n=1)
        guess = f" did you mean {close[0]!r}?" if close else ""
        raise BackendNotFoundError(
            f"Backend: {name!r} is not supported in the storegate (no backend of that name is "
            f"installed);{guess} installed backends: {', '.join(known)}. Third-party backends "
            f"register in the entry-point group {ENTRY_POINT_GROUP!r}."
        )
    cls = _import_target(specs[name])
    with _lock:
        _loaded[name] = cls
    return cls


def load_all() -> tuple[dict[str, type[Backend]], dict[str, BackendImportError]]:
    """Import every registered backend; warn about (and return) the ones that fail.

    Examples
    --------
    >>> ok, failed = load_all()
    >>> "numpy" in ok
    True
    """
    ok: dict[str, type[Backend]] = {}
    failed: dict[str, BackendImportError] = {}
    for name, spec in sorted(backend_specs().items()):
        try:
            ok[name] = get_backend(name)
        except BackendImportError as err:
            failed[name] = err
            warnings.warn(str(err), BackendPluginWarning, stacklevel=2)
            logger.debug("backend %s failed to load", spec.describe(), exc_info=True)
    return ok, failed


def _url_exists(location: str, storage_options: dict[str, Any] | None) -> bool | None:
    """Whether anything exists at an fsspec URL (``None``: cannot tell)."""
    try:
        from fsspec.core import url_to_fs

        fs, root = url_to_fs(location, **(storage_options or {}))
        fs.invalidate_cache()
        return bool(fs.exists(root))
    except Exception:
        return None


def _guess(cls: type[Backend], location: str, storage_options: dict[str, Any] | None) -> bool:
    """``cls.guess_can_open(location)``, with ``storage_options=`` for backends that take it
    (the keyword is optional for plugins)."""
    if storage_options is not None:
        try:
            params = inspect.signature(cls.guess_can_open).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        if "storage_options" in params:
            return bool(cls.guess_can_open(location,  # type: ignore[call-arg]
                                           storage_options=storage_options))
    return bool(cls.guess_can_open(location))


def guess_backend(location: str, storage_options: dict[str, Any] | None = None) -> str:
    """The name of the installed backend that recognises the store at ``location``.

    Each backend is asked (:meth:`Backend.guess_can_open <storegate.backends.Backend.
    guess_can_open>`, a cheap look at marker files) in registry order, built-ins first;
    plugins that fail to import are skipped. ``storage_options`` (fsspec options for URLs:
    endpoint, credentials) reach the backends whose ``guess_can_open`` takes them.

    Raises
    ------
    StoreNotFoundError
        Nothing exists at ``location`` (a local path).
    CorruptStoreError
        Something exists there, but no installed backend recognises it.

    Examples
    --------
    >>> import tempfile
    >>> from storegate import StoreGate
    >>> path = tempfile.mkdtemp() + "/store.zarr"
    >>> StoreGate("zarr", {"output_dir": path}, data_id="d").close()
    >>> guess_backend(path)
    'zarr'
    """
    import os

    from ..errors import CorruptStoreError, StoreNotFoundError

    location = os.fspath(location)
    names = sorted(backend_specs(), key=lambda n: (n not in _BUILTIN_FALLBACK, n))
    for name in names:
        try:
            cls = get_backend(name)
        except BackendImportError:
            logger.debug("guess_backend: skipping backend %r (fails to import)", name,
                         exc_info=True)
            continue
        try:
            if _guess(cls, location, storage_options):
                return name
        except Exception:  # a plugin's guess must never break the others
            logger.debug("guess_backend: %r.guess_can_open raised", name, exc_info=True)
    if "://" not in location and not os.path.exists(location):
        raise StoreNotFoundError(f"no store at {location!r}: the path does not exist.")
    if "://" in location and _url_exists(location, storage_options) is False:
        raise StoreNotFoundError(
            f"no store at {location!r}: nothing exists at that URL (check the bucket and path, "
            "and the endpoint and credentials: storage_options or the AWS_* variables).")
    raise CorruptStoreError(
        f"{location!r} is not a store any installed backend recognises (asked: "
        f"{', '.join(names)}); pass the backend explicitly (--backend NAME, or "
        "StoreGate.open(location, backend=NAME)), or install the plugin that wrote it.")
