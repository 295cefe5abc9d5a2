"""Settings shared by the backends that store data behind fsspec URLs (``s3://``, ``gs://``).

Examples
--------
>>> is_url("s3://bucket/store.zarr"), is_url("runs/store.zarr"), is_url("file:///tmp/s")
(True, False, False)
>>> remote_options("s3://bucket/store.zarr", {"anon": True})
{'max_concurrency': 1, 'anon': True}
>>> remote_options("s3://bucket/store.zarr", {"max_concurrency": 4})
{'max_concurrency': 4}
>>> remote_options("gs://bucket/store.zarr", None)
{}
"""

from __future__ import annotations

from typing import Any

__all__ = ["is_url", "remote_options"]

# Per-protocol defaults for fsspec's options, applied under the user's own. s3fs splits a
# whole-object GET into concurrent ranged GETs when ``max_concurrency > 1``, and finds the
# object's size with a HEAD request first: two requests for every chunk, where storegate's
# chunks (4 MiB by default) are far below the 50 MiB at which splitting pays. storegate
# fetches many chunks at once instead (concurrency across objects, not within one).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "s3": {"max_concurrency": 1},
    "s3a": {"max_concurrency": 1},
}


def is_url(location: str) -> bool:
    """Whether ``location`` is a URL for fsspec (``file://`` counts as a local path)."""
    return "://" in location and not location.startswith("file://")


def remote_options(location: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """fsspec options for ``location``: storegate's defaults for its protocol (see the
    module), overridden by the user's ``storage_options``."""
    protocol = location.split("://", 1)[0].lower() if "://" in location else ""
    return {**_DEFAULTS.get(protocol, {}), **(storage_options or {})}
