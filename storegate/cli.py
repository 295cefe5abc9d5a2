"""The ``storegate`` command: look inside stores, check them, convert files.

Exit codes: 0 success, 1 a problem was found (a failed conversion, an unreadable store, a
failed ``check``), 2 a usage error (unknown command or option, a bad argument value).

Examples
--------
>>> main(["--version"])  # doctest: +ELLIPSIS
storegate ...
0
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["main"]

logger = logging.getLogger("storegate.cli")

_EPILOG = """\
examples:
  storegate ls runs/jets.zarr
  storegate info runs/jets.zarr
  storegate head runs/jets.zarr --data-id jets --phase train --var pt -n 5
  storegate convert kinase.npz kinase.zarr                  # kinoml NPZ -> zarr store
  storegate convert events.parquet events.zarr --phase 0.8,0.1,0.1 --shuffle 0
  storegate convert old_multiml.zarr new.zarr --backend parquet
  storegate convert runs/jets.zarr jets.h5 --data-id jets   # store -> HDF5 file
  storegate check runs/jets.zarr
  storegate unlock s3://bucket/runs/jets.zarr               # a killed writer's lease
  storegate backends

exit status: 0 ok, 1 problems found (or the operation failed), 2 usage error.
"""


class _UsageError(Exception):
    """A bad argument value: reported like argparse's own errors (exit 2)."""


# ---------------------------------------------------------------------------------- helpers
def _open(args: argparse.Namespace, mode: str = "r") -> Any:
    from .gate import StoreGate

    return StoreGate.open(args.store, backend=args.backend, mode=mode,
                          data_id=getattr(args, "data_id", None))


def _data_ids(gate: Any, wanted: str | None) -> list[str]:
    ids: list[str] = gate.get_data_ids()
    if wanted is None:
        return ids
    return [wanted]


def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
              for r in rows]
    return "\n".join(lines)


def _progress(args: argparse.Namespace) -> Any:
    if getattr(args, "quiet", False):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        logger.info("install tqdm (pip install 'storegate[cli]') for progress bars")
        return None
    def bar(**kwargs: Any) -> Any:
        # disable=None: no bar when stderr is not a terminal (logs, CI, pipes)
        return tqdm(disable=None, leave=False, unit_scale=True, **kwargs)

    return bar


def _phase_spec(text: str | None) -> Any:
    """``train`` / ``0.8,0.1,0.1`` / ``800,100,100`` -> what the importers take."""
    if text is None:
        return None
    text = text.strip()
    if "," not in text:
        return text
    parts = [p.strip() for p in text.split(",")]
    try:
        if all(p.isdigit() for p in parts):
            return tuple(int(p) for p in parts)
        return tuple(float(p) for p in parts)
    except ValueError:
        raise _UsageError(
            f"--phase {text!r}: give a phase name (train), fractions (0.8,0.1,0.1) or "
            "counts (800,100,100).") from None


# ---------------------------------------------------------------------------------- commands
def cmd_ls(args: argparse.Namespace) -> int:
    from .phases import PHASES

    gate = _open(args)
    db = gate.db
    for did in _data_ids(gate, args.data_id):
        print(did)
        for ph in PHASES:
            names = db.var_names(did, ph)
            if not names:
                print(f"  {ph}: (empty)")
                continue
            rows = db.info(did, ph, names[0]).length
            print(f"  {ph} ({rows:,} rows): {', '.join(names)}")
    gate.close()
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .phases import PHASES

    gate = _open(args)
    db = gate.db
    print(f"store: {db.describe()} (backend {gate.backend})")
    for did in _data_ids(gate, args.data_id):
        gate.set_data_id(did)
        print(gate.info_table())
        rows = []
        for ph in PHASES:
            for v in db.var_names(did, ph):
                info = db.info(did, ph, v)
                chunks = "-" if info.chunks is None else "x".join(map(str, info.chunks))
                rows.append([ph, v, info.dtype.str + (" ragged" if info.ragged else ""),
                             chunks, info.codec or "none", _size(info.nbytes),
                             _size(db.stored_bytes(did, ph, v))])
        if rows:
            print(_table(["phase", "var", "dtype", "chunks", "codec", "size", "on disk"],
                         rows))
        print()
    gate.close()
    return 0


def cmd_head(args: argparse.Namespace) -> int:
    from .phases import check_phase

    gate = _open(args)
    if gate.data_id is None:
        raise _UsageError(
            f"{args.store} holds data_ids {gate.get_data_ids()}; choose one with --data-id.")
    phase = check_phase(args.phase)
    names = args.var or gate.get_var_names(phase)
    if args.n < 0:
        raise _UsageError(f"-n {args.n}: give the number of rows to show (0 or more).")
    n = args.n
    with np.printoptions(threshold=args.threshold, edgeitems=3, linewidth=100):
        for v in names:
            rows = gate.get_data(v, phase, slice(0, n), ragged_as="list")
            print(f"{v} ({gate.data_id}/{phase}, first {len(rows)} rows):")
            for i, row in enumerate(rows):
                text = np.array2string(np.asarray(row), separator=", ")
                print(f"  [{i}] " + text.replace("\n", "\n      "))
    gate.close()
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    import warnings

    from .backends.registry import BackendPluginWarning, backend_specs, load_all

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BackendPluginWarning)
        ok, failed = load_all()
    rows = []
    for name, spec in sorted(backend_specs().items()):
        status = "ok" if name in ok else "FAILED"
        rows.append([name, spec.distribution or "-", spec.version or "-", status,
                     spec.target])
    print(_table(["backend", "distribution", "version", "status", "target"], rows))
    for name, err in failed.items():
        print(f"\n{name}: {err}")
    return 1 if failed else 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert

    result = convert(
        args.src, args.dst, backend=args.backend, src_backend=args.src_backend,
        data_id=args.data_id, phase=_phase_spec(args.phase), shuffle=args.shuffle,
        dtype=args.dtype, layout=args.layout, overwrite=args.overwrite,
        progress=_progress(args))
    results = result if isinstance(result, list) else [result]
    if not args.quiet:
        for r in results:
            sizes = ", ".join(f"{ph} {n:,}" for ph, n in r.sizes.items())
            print(f"{args.src} -> {args.dst}: data_id {r.data_id!r}, rows {sizes}; vars "
                  f"{', '.join(r.var_names)}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .checks import check_store

    gate = _open(args)
    ids = None if args.data_id is None else [args.data_id]
    report = check_store(gate, ids, progress=_progress(args))
    gate.close()
    for problem in report.problems:
        print(f"{args.store}: {problem}")
    if not args.quiet or report.problems:
        verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        print(f"{args.store}: {verdict} ({report.data_ids} data_id(s), {report.vars_checked} "
              f"var(s), {report.rows_checked:,} rows checked)",
              file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def cmd_unlock(args: argparse.Namespace) -> int:
    from .backends.locking import LOCK_NAME, break_lease

    loc = str(args.store)
    if "://" not in loc or loc.startswith("file://"):
        print(f"{loc}: nothing to unlock: on a local disk the writer lock ends with its "
              "process, however it ends (the kernel releases it)")
        return 0
    try:
        from fsspec.core import url_to_fs

        fs, root = url_to_fs(loc)
    except ImportError as err:
        raise _UsageError(f"{loc!r} needs a library that is not installed ({err}); for s3:// "
                          "URLs: pip install 'storegate[s3]'") from None
    info = break_lease(fs, f"{str(root).rstrip('/')}/{LOCK_NAME}")
    if info is None:
        print(f"{loc}: no lease: no writer holds this store")
    else:
        print(f"{loc}: removed the lease of process {info.get('pid', '?')} on "
              f"{info.get('host', '?')} (since {info.get('since', '?')})")
    return 0


# ---------------------------------------------------------------------------------- parser
def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", metavar="STORE", help="store directory (or URL)")
    p.add_argument("--backend", help="the store's backend (default: detected)")
    p.add_argument("--data-id", help="only this data_id")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        text = err.args[0]  # KeyError's str() would quote the message
    return text.splitlines()[0] if text else repr(err)


def build_parser() -> argparse.ArgumentParser:
    """The ``storegate`` argument parser."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="storegate", description="Look inside storegate stores, check them, and convert "
        "NPZ, Parquet and HDF5 files and multiml stores.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"storegate {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log what happens (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str,
            example: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help,
                           epilog=f"example:\n  {example}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=fn)
        return p

    p = add("info", cmd_info, "the show_info table plus chunks, codec and size on disk per var",
            "storegate info runs/jets.zarr")
    _store_args(p)
    p = add("ls", cmd_ls, "list data_ids, phases and vars", "storegate ls runs/jets.zarr")
    _store_args(p)
    p = add("head", cmd_head, "print the first rows of vars",
            "storegate head runs/jets.zarr --data-id jets --phase train --var pt -n 5")
    _store_args(p)
    p.add_argument("--phase", default="train", help="phase (default train)")
    p.add_argument("--var", action="append", help="var to show (repeatable; default all)")
    p.add_argument("-n", type=int, default=5, help="rows to show (default 5)")
    p.add_argument("--threshold", type=int, default=30,
                   help="numbers per row before numpy abbreviates (default 30)")
    p = add("convert", cmd_convert, "convert a file or store into a store or file",
            "storegate convert kinase.npz kinase.zarr --phase 0.8,0.1,0.1")
    p.add_argument("src", metavar="SRC", help="NPZ, Parquet or HDF5 file, or a store")
    p.add_argument("dst", metavar="DST", help="new store, or a .npz/.parquet/.h5 file")
    p.add_argument("--backend", help="backend of the DST store (default zarr)")
    p.add_argument("--src-backend", help="backend of the SRC store (default: detected)")
    p.add_argument("--data-id", help="data_id to create (imports) or to export")
    p.add_argument("--phase", help="imports: train | 0.8,0.1,0.1 | 800,100,100; "
                   "exports: one phase (default all)")
    p.add_argument("--shuffle", type=int, metavar="SEED",
                   help="shuffle rows of every phase with this seed")
    p.add_argument("--dtype", help="cast floating-point vars, e.g. float32")
    p.add_argument("--layout", help="source layout for imports (kinoml, plain/table), file "
                   "layout for exports")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    p = add("backends", cmd_backends, "installed backends and plugins that failed to load",
            "storegate backends")
    p = add("check", cmd_check, "read every var fully and report every problem found",
            "storegate check runs/jets.zarr")
    _store_args(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar; print "
                   "only problems")
    p = add("unlock", cmd_unlock, "remove the writer lease of an object-store store whose "
            "writer is gone (killed, its machine lost); credentials from the environment",
            "storegate unlock s3://bucket/runs/jets.zarr")
    p.add_argument("store", metavar="STORE", help="store URL (s3://, gs://, ...)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``storegate`` command; return its exit code."""
    from .errors import (
        DataIdNotFoundError,
        InvalidArgumentError,
        InvalidPhaseError,
        StoregateError,
        VarNotFoundError,
    )

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="storegate: %(levelname)s: %(message)s")
    try:
        return int(args.func(args))
    except _UsageError as err:
        print(f"storegate {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (InvalidArgumentError, InvalidPhaseError) as err:  # a bad option value
        print(f"storegate {args.command}: error: {_first_line(err)}", file=sys.stderr)
        return 2
    except (DataIdNotFoundError, VarNotFoundError) as err:
        # inspecting a store, a wrong --data-id / --var is a usage error; in a conversion the
        # data decide (e.g. a var missing from one phase), so it is a problem found
        print(f"storegate {args.command}: error: {_first_line(err)}", file=sys.stderr)
        return 1 if args.command == "convert" else 2
    except (StoregateError, OSError) as err:
        message = _first_line(err)
        if isinstance(err, OSError) and not isinstance(err, StoregateError) and err.filename:
            message = f"{err.filename}: {err.strerror or err}"
        print(f"storegate {args.command}: error: {message}", file=sys.stderr)
        logger.debug("details", exc_info=True)
        return 1
    except KeyboardInterrupt:
        print(f"storegate {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
