"""Shared helpers of the ``test_crafted_*`` files (no tests here).

Hostile stores and files are built with the real libraries in ``tmp_path``; anything that
decodes them runs in a child interpreter (:func:`run_child`) with its address space limited
(``RLIMIT_AS``, 2 GiB), so a crash, an abort or a huge allocation is seen as a negative return
code or a ``MemoryError`` instead of taking the test run down. The child reports, per
operation, whether it succeeded or raised, the exception type, whether it is a
``StoregateError``, its message, and the peak resident memory of the child.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import storegate

#: The checkout holding the ``storegate`` package (children import it from there).
REPO = str(Path(storegate.__file__).resolve().parent.parent)
#: Address space of a child: far below what any lying metadata claims.
LIMIT_BYTES = 2 << 30
#: Peak resident memory a child may reach (imports of zarr/pyarrow take ~100-150 MiB).
MAX_RSS_MB = 600

_CHILD = r"""
import contextlib, io, json, resource, sys, warnings
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
warnings.simplefilter("ignore")
import numpy as np
from storegate import StoreGate
from storegate.errors import StoregateError
from storegate.checks import check_store
from storegate import cli

jobs = json.loads(sys.stdin.read())
out = []


def result(fn):
    try:
        value = fn()
        return {"ok": True, "value": value if isinstance(value, (int, str, list, bool))
                else repr(value)[:400]}
    except StoregateError as err:
        return {"ok": False, "sg": True, "type": type(err).__name__,
                "mro": [c.__name__ for c in type(err).__mro__], "msg": str(err)}
    except BaseException as err:  # what the test must never see
        return {"ok": False, "sg": False, "type": type(err).__name__, "msg": str(err)[:800]}


def cli_check(path):
    buf_out, buf_err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf_out), contextlib.redirect_stderr(buf_err):
        rc = cli.main(["check", path, "-q"])
    return [rc, buf_out.getvalue() + buf_err.getvalue()]


for job in jobs:
    res = {}
    state = {}
    backend, path, did, var = job["backend"], job["path"], job.get("data_id", "d"), job["var"]
    args = {"path": path} if backend == "hdf5" else {"output_dir": path}
    args["mode"] = "r"

    def gate():
        if "sg" not in state:
            state["sg"] = StoreGate(backend, dict(args), data_id=did)
        return state["sg"]

    for op in job["ops"]:
        name, _, arg = op.partition(":")
        if name == "open":
            fn = lambda: repr(gate())
        elif name == "vars":
            fn = lambda: gate().get_var_names("train")
        elif name == "len":
            fn = lambda: int(len(gate()["train"]))
        elif name == "compile":
            fn = lambda: gate().compile()
        elif name == "info":
            fn = lambda: repr(gate().db.info(did, "train", var))
        elif name == "row":
            fn = lambda i=int(arg): np.asarray(gate().db.read(did, "train", var, i)).tolist()
        elif name == "rows":
            a, b = (int(x) for x in arg.split(","))
            fn = lambda a=a, b=b: np.asarray(
                gate().db.read(did, "train", var, slice(a, b, 1))).tolist()
        elif name == "gather":
            idx = np.array([int(x) for x in arg.split(",")], dtype=np.int64)
            fn = lambda idx=idx: np.asarray(gate().db.read(did, "train", var, idx)).tolist()
        elif name == "all":
            fn = lambda: repr(gate().get_data(var, "train"))[:200]
        elif name == "check":
            fn = lambda: [str(p) for p in check_store(gate()).problems]
        elif name == "cli":
            fn = lambda: cli_check(path)
        else:
            raise SystemExit(f"unknown op {op!r}")
        res[op] = result(fn)
    out.append(res)
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("@@RESULT@@" + json.dumps({"jobs": out, "maxrss_mb": rss}))
"""


#: Linux carries a process's peak RSS into its children (over fork and exec), so a child of
#: a large test process would report that process's peak; measuring children are therefore
#: started by this small launcher and see a baseline of their own.
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)"


def fresh_python(*args: str) -> list[str]:
    """The command line of a Python child whose peak RSS is its own (see :data:`LAUNCHER`)."""
    return [sys.executable, "-c", LAUNCHER, sys.executable, *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_child(jobs: list[dict[str, Any]], limit: int = LIMIT_BYTES,
              timeout: float = 300) -> dict[str, Any]:
    """Run ``jobs`` (each ``{"backend", "path", "var", "ops": [...], "data_id"?}``) in a child
    interpreter limited to ``limit`` bytes of address space. Asserts the child exited normally
    (no signal: no segfault, abort or OOM kill) and returns ``{"jobs": [...], "maxrss_mb"}``,
    one ``{op: result}`` dict per job."""
    proc = subprocess.run(fresh_python("-c", _CHILD, str(limit)), input=json.dumps(jobs),
                          capture_output=True, text=True, env=child_env(), timeout=timeout)
    assert proc.returncode >= 0, (
        f"the child died of signal {-proc.returncode}:\n{proc.stderr[-3000:]}")
    marker = [line for line in proc.stdout.splitlines() if line.startswith("@@RESULT@@")]
    assert proc.returncode == 0 and marker, (
        f"the child failed (rc {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(marker[-1][len("@@RESULT@@"):])
    return out


def names_var(message: str, var: str) -> bool:
    """Whether an error message names the var: ``'x'`` or a path ending in it
    (``'d/train/x'``, ``'.../d/train/x/c/1/0'``)."""
    return bool(re.search(r"['/]" + re.escape(var) + r"['/]", message))


def assert_clean(res: dict[str, Any], *names: str, allow_ok: bool = True,
                 kinds: tuple[str, ...] = (), var: str | None = None) -> None:
    """One operation's result: a success (if ``allow_ok``) or a ``StoregateError`` whose
    message names every one of ``names`` and the var ``var`` (see :func:`names_var`), and
    whose class or a base is in ``kinds``."""
    if res["ok"]:
        assert allow_ok, f"expected a StoregateError, got success: {res}"
        return
    assert res["sg"], f"a raw {res['type']} escaped: {res['msg']}"
    for name in names:
        assert name in res["msg"], f"the message does not name {name!r}: {res['msg']}"
    if var is not None:
        assert names_var(res["msg"], var), f"the message does not name var {var!r}: {res['msg']}"
    if kinds:
        assert set(kinds) & set(res["mro"]), f"{res['type']} is none of {kinds}: {res['msg']}"


def assert_error(res: dict[str, Any], *names: str, kinds: tuple[str, ...] = (),
                 var: str | None = None) -> None:
    assert_clean(res, *names, allow_ok=False, kinds=kinds, var=var)


def tree_digest(root: str | os.PathLike[str]) -> dict[str, str]:
    """Every entry below ``root`` (not following links): file contents hashed, links by
    target, directories by name. Equal digests mean the tree was not modified."""
    out: dict[str, str] = {}
    root = os.fspath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = "link:" + os.readlink(p)
            elif os.path.isfile(p):
                with open(p, "rb") as f:
                    out[rel] = "file:" + hashlib.sha256(f.read()).hexdigest()
            else:
                out[rel] = "dir"
    return out


def assert_cli_convert_refuses(tmp_path: Path, files: dict[str, tuple[Path, str]]) -> None:
    """``storegate convert`` of each crafted file exits 1 with a message naming the member
    (no traceback)."""
    for name, (path, member) in files.items():
        proc = subprocess.run(
            [sys.executable, "-m", "storegate.cli", "convert", str(path),
             str(tmp_path / f"cli-{name}.zarr"), "-q"],
            capture_output=True, text=True, env=child_env(), cwd=str(tmp_path), timeout=120)
        assert proc.returncode == 1, (name, proc.returncode, proc.stderr)
        assert member in proc.stderr and "Traceback" not in proc.stderr, (name, proc.stderr)
