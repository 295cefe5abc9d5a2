"""Code the contract suite runs in child processes (spawned or forked).

Kept free of pytest so a spawned child imports little. The functions here must stay importable
by module path, because a spawned child unpickles them by name.
"""

from __future__ import annotations

import multiprocessing
import pickle
import traceback
from typing import Any

import numpy as np

from ..backends.base import Backend
from ..indexing import Index

__all__ = ["ReadRequest", "read_in_child", "run_reads_in_process"]

#: One read a child performs: ``(data_id, phase, var, index)``.
ReadRequest = tuple[str, str, str, Index]


def read_in_child(conn: Any, backend: Backend | bytes, requests: list[ReadRequest]) -> None:
    """Entry point of the child: read each request and send the results back.

    Parameters
    ----------
    conn
        The sending end of a ``multiprocessing`` pipe.
    backend
        The backend itself (inherited through ``fork``) or its pickle (sent to a spawned
        child, which then unpickles it, as a ``DataLoader`` worker would).
    requests
        The reads to perform, in order.
    """
    try:
        be = pickle.loads(backend) if isinstance(backend, bytes) else backend
        results = [be.read(*req) for req in requests]
        infos = [
            (tuple(be.info(d, p, v).shape), str(be.info(d, p, v).dtype))
            for d, p, v, _ in requests
        ]
        conn.send(("ok", (results, infos)))
    except BaseException:  # report everything, the parent turns it into a test failure
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def run_reads_in_process(
    method: str,
    backend: Backend,
    requests: list[ReadRequest],
    timeout: float = 120.0,
) -> tuple[list[np.ndarray], list[tuple[tuple[int, ...], str]]]:
    """Run ``requests`` in a child process started with ``method`` and return its results.

    Parameters
    ----------
    method
        ``"spawn"`` (the backend is pickled and sent) or ``"fork"`` (the child inherits the
        live object, including any open handles, which it must not reuse blindly).
    backend
        The backend to read from.
    requests
        ``(data_id, phase, var, index)`` tuples.
    timeout
        Seconds to wait for the child before killing it (a deadlocked handle after ``fork``
        must fail the test, not hang it).

    Returns
    -------
    results, infos
        The arrays the child read and ``(shape, dtype name)`` of each var as the child saw it.

    Raises
    ------
    AssertionError
        If the child fails, dies or does not answer in time.
    """
    ctx: Any = multiprocessing.get_context(method)
    recv_end, send_end = ctx.Pipe(duplex=False)
    payload: Backend | bytes = pickle.dumps(backend) if method != "fork" else backend
    proc = ctx.Process(target=read_in_child, args=(send_end, payload, requests), daemon=True)
    proc.start()
    send_end.close()
    try:
        if not recv_end.poll(timeout):
            raise AssertionError(
                f"the {method}ed child process did not answer within {timeout} s "
                f"(exit code {proc.exitcode}); a handle inherited across fork may be deadlocked."
            )
        try:
            status, value = recv_end.recv()
        except EOFError:
            proc.join(timeout)
            raise AssertionError(
                f"the {method}ed child process died without an answer (exit code "
                f"{proc.exitcode})."
            ) from None
    finally:
        recv_end.close()
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
    if status != "ok":
        raise AssertionError(f"reading in a {method}ed child process failed:\n{value}")
    results, infos = value
    return results, infos
