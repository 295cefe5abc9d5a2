"""Progress reporting for long operations (conversions, store checks).

Long-running functions take ``progress=``: ``None`` or ``False`` (silent, the default),
``True`` (a :mod:`tqdm` bar; needs ``pip install 'storegate[cli]'``), or any callable with
tqdm's signature — ``progress(total=..., unit=..., desc=...)`` returning an object with
``update(n)`` and ``close()`` — so ``tqdm.tqdm``, ``tqdm.auto.tqdm`` or your own bar plug in
directly. The library itself never prints: it logs, and draws bars only when asked.

Examples
--------
>>> from storegate.progress import progress_bar
>>> with progress_bar(None, total=3, unit="rows", desc="copy") as bar:
...     bar.update(3)
>>> class Recorder:
...     def __init__(self, **kw): self.done, self.kw = 0, kw
...     def update(self, n=1): self.done += n
...     def close(self): print(self.kw["desc"], self.done, "of", self.kw["total"])
>>> with progress_bar(Recorder, total=5, unit="rows", desc="copy") as bar:
...     bar.update(2); bar.update(3)
copy 5 of 5
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from .errors import InvalidArgumentError, MissingDependencyError

__all__ = ["Progress", "ProgressBar", "progress_bar"]


class ProgressBar(Protocol):
    """What a progress bar must offer (``tqdm.tqdm`` instances do)."""

    def update(self, n: int = 1) -> Any:  # pragma: no cover - protocol
        ...

    def close(self) -> Any:  # pragma: no cover - protocol
        ...


#: The ``progress=`` argument: off, tqdm, or a tqdm-like factory.
Progress = bool | Callable[..., ProgressBar] | None


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


@contextlib.contextmanager
def progress_bar(progress: Progress, *, total: int | None, unit: str,
                 desc: str) -> Iterator[ProgressBar]:
    """A bar for ``progress`` (see the module docstring), closed when the block ends."""
    bar: ProgressBar
    if progress is None or progress is False:
        bar = _Silent()
    elif progress is True:
        try:
            from tqdm import tqdm
        except ImportError:
            raise MissingDependencyError(
                "progress=True draws a tqdm bar, but tqdm is not installed; install it with "
                "`pip install 'storegate[cli]'` (or `pip install tqdm`), or pass "
                "progress=None.") from None
        bar = tqdm(total=total, unit=unit, desc=desc, unit_scale=True, leave=False)
    elif callable(progress):
        bar = progress(total=total, unit=unit, desc=desc)
    else:
        raise InvalidArgumentError(
            f"progress must be None, a bool or a tqdm-like callable, got {progress!r}.")
    try:
        yield bar
    finally:
        bar.close()
