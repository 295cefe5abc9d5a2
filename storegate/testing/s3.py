"""A local S3-protocol server for tests and benchmarks: moto's ``ThreadedMotoServer``.

:class:`LocalS3` starts the server on ``127.0.0.1`` (a free port), in a thread of the current
process, with dummy credentials, and stops it again; :meth:`LocalS3.bucket` makes a fresh bucket
and returns its ``s3://`` URL. :meth:`LocalS3.storage_options` are the fsspec options a
:class:`~storegate.StoreGate` needs to reach it (``backend_args={"storage_options": ...}``).
The same server is what s3fs and zarr test against. It needs ``moto[server]`` and ``s3fs``.

Because the server lives in this process, a child process reaches it over TCP like any other
client, through the URL and the options (spawned children included).

Examples
--------
>>> import numpy as np
>>> from storegate import StoreGate
>>> from storegate.testing.s3 import LocalS3
>>> with LocalS3() as s3:
...     url = s3.bucket("demo") + "/store.zarr"
...     sg = StoreGate(backend="zarr", data_id="d",
...                    backend_args={"output_dir": url, "storage_options": s3.storage_options})
...     sg.add_data("x", np.arange(10.0), phase="train"); sg.compile()
...     print(float(sg["train"]["x"][3]))
...     sg.close()  # writes what is buffered and ends the writer's lease, while the server runs
3.0
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from storegate.errors import MissingDependencyError

__all__ = ["LocalS3", "s3_environment"]

log = logging.getLogger(__name__)

#: Dummy credentials the server accepts (moto accepts any; botocore insists on some).
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "storegate-test",
    "AWS_SECRET_ACCESS_KEY": "storegate-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}

_counter = itertools.count()
_lock = threading.Lock()


@contextlib.contextmanager
def s3_environment(endpoint_url: str | None = None,
                   credentials: dict[str, str] | None = None) -> Iterator[None]:
    """Set the AWS environment variables (credentials, region and, when given, the endpoint
    ``AWS_ENDPOINT_URL``) for a block, restoring the old values afterwards.

    ``credentials`` (``AWS_*`` variables) default to the local server's dummy ones.

    fsspec caches S3 file systems, and each keeps the settings it was created with; the
    cache is cleared on entry and exit so clients inside the block see the new variables.

    >>> import os
    >>> with s3_environment("http://127.0.0.1:9"):
    ...     os.environ["AWS_ENDPOINT_URL"]
    'http://127.0.0.1:9'
    """
    new = dict(CREDENTIALS if credentials is None else credentials)
    if endpoint_url is not None:
        new["AWS_ENDPOINT_URL"] = endpoint_url
    old = {k: os.environ.get(k) for k in new}
    os.environ.update(new)
    _forget_clients()  # a cached client keeps the endpoint it was created with
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _forget_clients()


def _forget_clients() -> None:
    """Drop fsspec's cached S3 file systems (each keeps the endpoint and credentials it was
    created with, so a change of the environment inside a process needs new ones)."""
    import sys

    s3fs = sys.modules.get("s3fs")
    if s3fs is not None:
        s3fs.S3FileSystem.clear_instance_cache()


class LocalS3:
    """moto's S3 server on 127.0.0.1, started by :meth:`start` (or ``with``) and stopped by
    :meth:`stop`.

    Parameters
    ----------
    port
        The TCP port; 0 (the default) takes a free one.
    """

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: Any = None
        self.endpoint_url = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalS3:
        """Start the server (idempotent) and return ``self``."""
        if self._server is not None:
            return self
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as err:
            raise MissingDependencyError(
                f"the local S3 server needs moto ({err}); pip install 'moto[server]' s3fs"
            ) from err
        for name in ("werkzeug", "moto"):  # one access-log line per request otherwise
            logging.getLogger(name).setLevel(logging.WARNING)
        for k, v in CREDENTIALS.items():  # clients created without options need some
            os.environ.setdefault(k, v)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._port, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self.endpoint_url = f"http://{host}:{port}"
        log.debug("local S3 server at %s", self.endpoint_url)
        return self

    def stop(self) -> None:
        """Stop the server (idempotent). Leases still held by this process are deleted first,
        and clients created for it are dropped from fsspec's instance cache."""
        server, self._server = self._server, None
        if server is None:
            return
        from storegate.backends.locking import release_leases

        release_leases()  # writers left open by tests: end their leases while it still runs
        _forget_clients()
        server.stop()

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server has been started and not stopped."""
        return self._server is not None

    # ------------------------------------------------------------------ clients
    @property
    def storage_options(self) -> dict[str, Any]:
        """fsspec options for ``s3://`` URLs on this server (endpoint and the dummy keys)."""
        self._require()
        return {
            "endpoint_url": self.endpoint_url,
            "key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        }

    def filesystem(self) -> Any:
        """An ``s3fs.S3FileSystem`` on this server."""
        self._require()
        try:
            import s3fs
        except ImportError as err:
            raise MissingDependencyError(
                f"s3:// URLs need s3fs ({err}); pip install 'storegate[s3]'"
            ) from err
        return s3fs.S3FileSystem(**self.storage_options)

    def bucket(self, prefix: str = "sg") -> str:
        """Create a new, empty bucket and return its URL (``s3://<name>``)."""
        with _lock:
            name = f"{prefix}-{os.getpid()}-{next(_counter)}".lower().replace("_", "-")
        fs = self.filesystem()
        fs.mkdir(name)
        fs.invalidate_cache()
        return f"s3://{name}"

    def _require(self) -> None:
        if self._server is None:
            raise RuntimeError("the local S3 server is not running; call start() first")
