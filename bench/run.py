"""Run every benchmark: ``python -m bench`` (or ``python bench/run.py``).

1. The performance suite (``bench/suite.py``): random gathers warm and cold, the chunk-aware
   sampler, sequential scans, a shuffled epoch, many vars, start-up, each beside raw numpy,
   the physical limits measured in the same run and the libraries a user would otherwise use.
   It prints one table and the targets of the performance issue, met or not.
2. Every other benchmark script in ``bench/`` (conversions, loaders, PyG, Parquet, ragged vars,
   transforms, reads from S3, dask I/O), each in its own process; their tables are kept in the
   report.

It writes ``RESULTS.md``'s generated section (between the ``bench:begin``/``bench:end``
markers; the hand-written analysis below them stays) and ``gather_latency.png`` (gather
latency per backend and batch size) into ``--output`` (default: ``bench/``; with ``--quick`` a
temporary directory, so a smoke run never overwrites the recorded results).

Usage::

    python -m bench                  # full size: about 10 minutes, 8 GB RAM, 10 GB disk
    python -m bench --quick          # a one-minute smoke run (CI)
    python -m bench --only suite     # just the performance suite
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # `python bench/run.py`
    sys.path.insert(0, str(ROOT))

from bench import suite  # noqa: E402
from bench.common import fmt_ms, machine, versions  # noqa: E402

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
SUITE = ("<!-- bench:suite -->", "<!-- bench:suite:end -->")
SCRIPTS_MARK = ("<!-- bench:scripts -->", "<!-- bench:scripts:end -->")

# the other scripts: (file, full-size arguments, quick arguments, modules they need)
SCRIPTS: list[tuple[str, list[str], list[str], list[str]]] = [
    ("gather.py", [], ["--quick"], ["zarr"]),
    ("parquet.py", [], ["--quick"], ["pyarrow"]),
    ("ragged.py", [], ["--quick"], ["pyarrow", "awkward"]),
    ("transforms.py", [], ["--quick"], ["zarr"]),
    ("convert.py", [], ["--n", "2000"], ["zarr"]),
    ("loader.py", [], ["--rows", "50000", "--batches", "20", "--items", "2000"], ["torch"]),
    ("pyg.py", [], ["--nodes", "20000", "--edges", "200000", "--batches", "5"],
     ["torch_geometric"]),
    ("remote.py", [], ["--quick"], ["s3fs", "moto", "zarr"]),
    ("dask_io.py", [], ["--quick"], ["dask", "distributed", "zarr"]),
    ("embeddings.py", [], ["--quick"], ["torch", "zarr"]),
]


def _available(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _table(res: suite.Results) -> str:
    lines = ["| case | implementation | time | x reference | note |", "|---|---|---:|---:|---|"]
    for r in res.rows:
        if r.case == "physical limits":
            value = f"{r.ms:.2f} GB/s"
        elif r.case.endswith("same pages"):
            value = f"{r.ms:.2f}x"
        else:
            value = fmt_ms(r.ms)
        base = res.get(r.case, r.ref) if r.ref else None
        ratio = f"{r.ms / base:.2f}x" if base else ""
        lines.append(f"| {r.case} | {r.who} | {value} | {ratio} | {r.note} |")
    return "\n".join(lines)


def _targets(res: suite.Results) -> str:
    lines = ["| target | measured | met |", "|---|---|---|"]
    for t in res.targets:
        lines.append(f"| {t.text} | {t.measured} | {'yes' if t.met else '**no**'} |")
    return "\n".join(lines)


def _plot(res: suite.Results, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install storegate[bench]); no plot written",
              file=sys.stderr)
        return False
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for who, curve in res.curves.items():
        sizes = sorted(curve)
        style = "--" if "storegate" not in who else "-"
        ax.plot(sizes, [curve[s] for s in sizes], style, marker="o", label=who)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    sizes = sorted({s for curve in res.curves.values() for s in curve})
    ax.set_xticks(sizes, [f"{s:,}" for s in sizes])
    ax.set_xlabel("rows per random batch (X float32 x 128 + int64 y)")
    ax.set_ylabel("median latency per batch (ms)")
    ax.set_title(f"Random gather latency, {res.facts['rows']:,} rows "
                 "(warm unless marked cold)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _between(text: str, begin: str, end: str) -> str | None:
    if begin in text and end in text:
        return text.split(begin, 1)[1].split(end, 1)[0].strip("\n")
    return None


def _write(out_dir: Path, suite_part: str | None, scripts_part: str | None,
           footer: str) -> Path:
    """Replace the generated block of RESULTS.md; a part not run this time (``None``) keeps
    what the previous run wrote."""
    path = out_dir / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    old = _between(text, BEGIN, END) or ""
    if suite_part is None:
        suite_part = _between(old, SUITE[0], SUITE[1]) or "(the suite was not run)"
    if scripts_part is None:
        scripts_part = _between(old, SCRIPTS_MARK[0], SCRIPTS_MARK[1]) or ""
    block = (f"{BEGIN}\n{SUITE[0]}\n{suite_part.rstrip()}\n{SUITE[1]}\n\n"
             f"{SCRIPTS_MARK[0]}\n{scripts_part.rstrip()}\n{SCRIPTS_MARK[1]}\n\n"
             f"{footer}\n{END}\n")
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        cut = text.find("\n## ")
        text = (text + "\n" + block) if cut < 0 else (text[:cut + 1] + block + "\n"
                                                       + text[cut + 1:])
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a one-minute smoke run")
    ap.add_argument("--rows", type=int, default=None,
                    help="rows of X (default 2,000,000; 100,000 with --quick)")
    ap.add_argument("--reps", type=int, default=None,
                    help="random batches per case (default 200; 20 with --quick)")
    ap.add_argument("--only", choices=["suite", "scripts"], default=None)
    ap.add_argument("--output", default=None, help="directory for RESULTS.md and the plot")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = ap.parse_args(argv)
    rows = args.rows or (100_000 if args.quick else 2_000_000)
    reps = args.reps or (20 if args.quick else 200)
    out_dir = Path(args.output) if args.output else (
        Path(tempfile.gettempdir()) / "storegate-bench-quick" if args.quick else HERE)
    out_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="storegate-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.time()
    mode = "--quick " if args.quick else ""
    command = f"python -m bench {mode}".strip() + (f" --rows {args.rows}" if args.rows else "")
    print(f"# {command}\n# machine: {machine()}\n# scratch: {scratch}", flush=True)
    parts: list[str] = []
    script_parts: list[str] = []
    failed: list[str] = []
    try:
        if args.only in (None, "suite"):
            res = suite.run(scratch, rows, reps, args.quick)
            plotted = _plot(res, out_dir / "gather_latency.png")
            table, targets = _table(res), _targets(res)
            print("\n" + table + "\n\n" + targets, flush=True)
            missed = [t for t in res.targets if not t.met]
            parts += [
                "## `python -m bench` — the performance targets in one run",
                "",
                f"- **Command:** `{command}`",
                f"- **Date:** {datetime.date.today().isoformat()}",
                f"- **Machine:** {machine()}; "
                + versions("zarr", "h5py", "pyarrow", "torch") + "; "
                + f"disk {res.facts['disk_gbs']:.2f} GB/s sequential (measured below)",
                f"- **Data:** X = {rows:,} x {suite.DIM} float32 + int64 y, random batches of "
                f"{suite.BATCH:,} unique rows, medians of {reps} batches unless noted. *Cold*: "
                "the files' pages evicted (`fsync` + `posix_fadvise(DONTNEED)`) before each "
                "repetition. Ratios compare rows of one case measured in this run.",
                "",
                "### Targets",
                "",
                targets,
                "",
                ("Every target is met." if not missed else
                 f"{len(missed)} target(s) not met; see the analysis below the tables."),
                "",
                "### Every case",
                "",
                table,
                "",
            ]
            if plotted:
                parts += ["![Random gather latency per backend and batch size]"
                          "(gather_latency.png)", ""]
        if args.only in (None, "scripts"):
            script_parts += ["### The other benchmark scripts (their own tables, this run)", ""]
            for script, full, quick, needs in SCRIPTS:
                missing = [m for m in needs if not _available(m)]
                cmd = [sys.executable, str(HERE / script), *(quick if args.quick else full)]
                shown = "python bench/" + " ".join([script, *(quick if args.quick else full)])
                if missing:
                    script_parts += [
                        f"- `{shown}`: skipped ({', '.join(missing)} not installed)", ""]
                    print(f"# skipped {script}: {missing} missing", flush=True)
                    continue
                print(f"# running {shown}", flush=True)
                t = time.time()
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                                      env={**os.environ, "PYTHONPATH": str(ROOT)})
                took = time.time() - t
                tables = [ln for ln in proc.stdout.splitlines() if ln.startswith("|")]
                if proc.returncode != 0:
                    failed.append(script)
                    print(proc.stdout[-2000:] + proc.stderr[-4000:], file=sys.stderr)
                    script_parts += [f"<details><summary><code>{shown}</code>: <b>failed</b> "
                              f"(exit {proc.returncode})</summary>", "", "```",
                              proc.stderr.strip()[-3000:], "```", "</details>", ""]
                    continue
                script_parts += [f"<details><summary><code>{shown}</code> ({took:.0f} s)</summary>",
                          "", *tables, "", "</details>", ""]
        footer = (f"_Generated by `{command}` in {time.time() - started:.0f} s"
                  + (f" (only the {args.only} part; the other is from an earlier run)"
                     if args.only else "") + "._")
        path = _write(out_dir, "\n".join(parts) if args.only != "scripts" else None,
                      "\n".join(script_parts) if args.only != "suite" else None, footer)
        print(f"\n# wrote {path}" + (f" and {out_dir / 'gather_latency.png'}"
                                      if (out_dir / "gather_latency.png").exists() else ""))
    finally:
        if not args.dir:
            shutil.rmtree(scratch, ignore_errors=True)
    if failed:
        print(f"# failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
