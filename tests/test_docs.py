"""The documentation site: ``mkdocs build --strict`` is clean, the API reference documents every
public name, and every example script is on the site.

The site is built once per module (about 10 s) into a temporary directory. Without mkdocs and its
plugins (``pip install -e '.[docs]'``) the tests skip, except under CI (``CI`` set), where a
missing dependency fails so the docs check cannot silently disappear.
"""

from __future__ import annotations

import html
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Every module whose ``__all__`` the API reference must cover.
DOCUMENTED_MODULES = (
    "storegate",
    "storegate.backends",
    "storegate.testing",
    "storegate.torch",
    "storegate.pyg",
    "storegate.graph",
    "storegate.embeddings",
    "storegate.convert",
    "storegate.dask",
)

#: Importing these needs an optional library; they skip without it (fail under CI).
OPTIONAL = {"storegate.torch": "torch", "storegate.pyg": "torch_geometric"}


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        if os.environ.get("CI"):
            pytest.fail(f"the docs tests need {module} (pip install -e '.[docs]')")
        pytest.skip(f"the docs tests need {module} (pip install -e '.[docs]')")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The built site's directory and mkdocs' output."""
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python",
                   "pymdownx"):
        _require(module)
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    return out, proc.stdout + proc.stderr + f"\n[exit status {proc.returncode}]"


def _html(site_dir: Path, under: str = "") -> str:
    return "\n".join(p.read_text(encoding="utf-8")
                     for p in sorted((site_dir / under).rglob("*.html")))


def test_strict_build_has_no_warnings(site: tuple[Path, str]) -> None:
    site_dir, output = site
    assert output.rstrip().endswith("[exit status 0]"), output
    assert "WARNING" not in output, output
    assert (site_dir / "index.html").is_file()
    assert (site_dir / "bench" / "gather_latency.png").is_file()


def _candidate_ids(module_name: str, module: ModuleType, name: str) -> set[str]:
    """The anchors under which ``module.name`` may be documented: its public path, the module
    that defines it, or any storegate module holding the same object (re-exports)."""
    obj: Any = getattr(module, name)
    ids = {f"{module_name}.{name}"}
    owner, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(owner, str) and isinstance(qualname, str):
        ids.add(f"{owner}.{qualname}")
    for other_name, other in list(sys.modules.items()):
        in_storegate = other_name == "storegate" or other_name.startswith("storegate.")
        if in_storegate and other is not None and vars(other).get(name) is obj:
            ids.add(f"{other_name}.{name}")
    return ids


def test_every_public_name_is_in_the_api_reference(site: tuple[Path, str]) -> None:
    site_dir, output = site
    assert (site_dir / "api").is_dir(), output
    ids = set(re.findall(r'\bid="(storegate[\w.]*)"', _html(site_dir, "api")))
    missing: list[str] = []
    checked = 0
    for module_name in DOCUMENTED_MODULES:
        if module_name in OPTIONAL:
            _require(OPTIONAL[module_name])
        module = importlib.import_module(module_name)
        for name in module.__all__:
            checked += 1
            candidates = _candidate_ids(module_name, module, name)
            if not candidates & ids:
                missing.append(f"{module_name}.{name} (looked for {sorted(candidates)})")
    assert checked > 100
    assert not missing, "not in the API reference (docs/api/*.md):\n" + "\n".join(missing)


def test_every_example_is_on_the_site(site: tuple[Path, str]) -> None:
    """Each ``examples/*.py`` has a section with its source on the Examples page, and some
    other page links to it."""
    site_dir, output = site
    examples_page = (site_dir / "examples" / "index.html").read_text(encoding="utf-8")
    others = _html(site_dir).replace(examples_page, "")
    page_text = html.unescape(re.sub(r"<[^>]+>", "", examples_page))
    scripts = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))
    assert scripts
    problems: list[str] = []
    for script in scripts:
        anchor = script.stem.replace("_", "-")
        if f"examples/{script.name}" not in examples_page:
            problems.append(f"examples/{script.name} is not on the Examples page")
        if f'id="{anchor}"' not in examples_page:
            problems.append(f"the Examples page has no section #{anchor}")
        if f"examples/#{anchor}" not in others:
            problems.append(f"no page but the Examples page links to examples/{script.name}")
        lines = [ln.strip() for ln in script.read_text(encoding="utf-8").splitlines()
                 if ln.strip()]
        if lines[-1] not in page_text:
            problems.append(f"the source of examples/{script.name} is not on the Examples page")
    assert not problems, "\n".join(problems) + "\n" + output[-2000:]


def _hooks() -> ModuleType:
    _require("mkdocs")
    spec = importlib.util.spec_from_file_location(
        "storegate_docs_hooks", ROOT / "docs" / "_hooks" / "storegate_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_links_leaving_docs_are_rewritten_to_site_pages(tmp_path: Path) -> None:
    hooks = _hooks()
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "demo_run.py").write_text('"""Demo."""\n')
    text = ("See [results](../bench/RESULTS.md), [demo](../examples/demo_run.py), "
            "[zarr](backends/zarr.md#options), [gone](../examples/gone.py), "
            "[web](https://example.org/x.md).\n```\n[results](../bench/RESULTS.md)\n```\n")
    out = hooks._rewrite_links(text, "docs/torch.md", "torch.md", tmp_path, "docs",
                               from_docs=True)
    assert "[results](benchmarks.md)" in out
    assert "[demo](examples.md#demo-run)" in out
    assert "[zarr](backends/zarr.md#options)" in out
    assert "[gone](../examples/gone.py)" in out  # left alone: strict mode reports it
    assert "[web](https://example.org/x.md)" in out
    assert out.endswith("```\n[results](../bench/RESULTS.md)\n```\n")  # code untouched
    # an included file's links are relative to the file, rewritten for the including page
    included = hooks._rewrite_links("![plot](gather_latency.png) [top](../README.md)",
                                    "bench/RESULTS.md", "backends/hdf5.md", tmp_path, "docs",
                                    from_docs=False)
    assert included == "![plot](../bench/gather_latency.png) [top](../index.md)"


def test_included_sections_and_brackets() -> None:
    hooks = _hooks()
    readme = ("# Title\n\nintro\n```\n# not a heading\n```\n## Why\n\nwhy text\n### sub\n\n"
              "more\n## Next\n")
    assert hooks._section(readme, "Title") == "\nintro\n```\n# not a heading\n```\n"
    assert hooks._section(readme, "Why") == "\nwhy text\n### sub\n\nmore\n"
    assert hooks._section(readme, "Missing") == ""
    row = "| gather | sg['train'][['x', 'y']][idx] | `sg['a']['b']` |\n"
    assert hooks._escape_brackets(row) == (
        "| gather | sg\\['train'\\]\\[\\['x', 'y'\\]\\]\\[idx\\] | `sg['a']['b']` |\n")
