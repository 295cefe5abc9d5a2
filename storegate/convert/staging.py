"""Write a conversion's output next to its destination, then rename it into place.

Every converter writes to a temporary path in the destination's directory
(``.<name>.sg-tmp-<pid>-<random>``) and renames it to the destination only after the last byte
is written, so a failure — an exception, a full disk, a kill — never leaves a half-written
file or store under the destination's name. With ``overwrite=True`` an existing destination
is moved aside first and deleted only after the new one is in place.

Temporaries left by a killed process are hidden files; the next conversion to the same
destination removes those whose process no longer runs.

Examples
--------
>>> import os, tempfile
>>> from storegate.convert.staging import staged
>>> dst = os.path.join(tempfile.mkdtemp(), "out.txt")
>>> with staged(dst) as tmp:
...     with open(tmp, "w") as f:
...         _ = f.write("done")
>>> open(dst).read()
'done'
>>> try:
...     with staged(dst) as tmp:
...         pass
... except FileExistsError as err:      # a DestinationExistsError
...     print("exists")
exists
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import Iterator

from ..backends.locking import pid_alive
from .errors import ConversionError, DestinationExistsError

__all__ = ["remove_path", "staged"]

logger = logging.getLogger(__name__)

_TMP = ".sg-tmp-"
_OLD = ".sg-old-"


def remove_path(path: str) -> None:
    """Delete a file or a directory tree; a missing path is fine."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _remove_stale(parent: str, base: str) -> None:
    """Remove temporaries of ``base`` left by processes that no longer run. A destination
    moved aside by a process killed before it moved the new one in is put back."""
    dst = os.path.join(parent, base)
    for prefix in (f".{base}{_TMP}", f".{base}{_OLD}"):
        try:
            names = [n for n in os.listdir(parent) if n.startswith(prefix)]
        except OSError:
            return
        for name in names:
            pid_text = name[len(prefix):].split("-", 1)[0]
            if pid_text.isdigit() and not pid_alive(int(pid_text)):
                path = os.path.join(parent, name)
                if prefix.endswith(_OLD) and not os.path.lexists(dst):
                    logger.info("restoring %s from %s", dst, path)
                    os.replace(path, dst)
                    continue
                logger.info("removing %s, left by a conversion that did not finish", path)
                remove_path(path)


@contextlib.contextmanager
def staged(dst: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[str]:
    """Yield a temporary path beside ``dst``; move it to ``dst`` when the block succeeds.

    Parameters
    ----------
    dst
        The destination file or directory (local path). Its parent directory is created if
        missing.
    overwrite
        Replace an existing ``dst``. Without it an existing ``dst`` raises before anything is
        written.

    Raises
    ------
    DestinationExistsError
        ``dst`` exists and ``overwrite`` is false (a ``FileExistsError``).
    """
    dst = os.fspath(dst)
    if "://" in dst:  # before abspath, which would make "s3://b/x" the local "s3:/b/x"
        raise ConversionError(f"{dst!r}: conversions write local paths only.", dst)
    dst = os.path.abspath(dst)
    parent, base = os.path.split(dst)
    _remove_stale(parent, base)  # first: it may put back a destination moved aside
    if os.path.lexists(dst) and not overwrite:
        raise DestinationExistsError(
            f"{dst!r} already exists; choose another destination or pass overwrite=True "
            "(--overwrite) to replace it.", dst)
    os.makedirs(parent, exist_ok=True)
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = os.path.join(parent, f".{base}{_TMP}{tag}")
    old = None
    try:
        yield tmp
        if not os.path.lexists(tmp):
            raise ConversionError(f"the conversion to {dst!r} wrote nothing.", dst)
        if os.path.lexists(dst):
            if not overwrite:  # appeared while we were writing
                raise DestinationExistsError(
                    f"{dst!r} was created by someone else during the conversion; the result "
                    "was discarded. Retry with another destination or overwrite=True.", dst)
            old = os.path.join(parent, f".{base}{_OLD}{tag}")
            os.replace(dst, old)
        os.replace(tmp, dst)
    except BaseException:
        if old is not None and not os.path.lexists(dst):
            os.replace(old, dst)  # the new one did not get in place: keep the old one
        remove_path(tmp)
        raise
    if old is not None:
        remove_path(old)
