"""MkDocs hooks for storegate's documentation site (``hooks:`` in ``mkdocs.yml``).

The pages in ``docs/`` are also read on GitHub, where a link such as ``../bench/RESULTS.md``
or ``../examples/quickstart.py`` is right. On the site those files are outside ``docs_dir``, so
this hook

* adds the files the site serves from outside ``docs/`` (``bench/gather_latency.png``);
* expands ``<!-- storegate:include PATH -->`` (a Markdown file of the repository, e.g.
  ``bench/RESULTS.md``, its first ``# title`` dropped) or ``<!-- storegate:include PATH
  section="Title" -->`` (the body of one section) with its links made relative to the
  including page (``pymdownx.snippets`` would keep them relative to the file);
* expands ``<!-- storegate:examples -->`` into a list of ``examples/*.py`` and a section per
  script: the
  docstring's summary, how to run it, the pages that explain it (Markdown links from the
  page's ``related:`` metadata, keyed by script name) and its source (included by
  ``pymdownx.snippets``);
* rewrites links that leave ``docs/`` to the site page that shows their target
  (:data:`SITE_PAGES`, :data:`ASSETS`, ``examples/<name>.py`` -> ``examples.md#<name>``).
  A link to anything else is left alone, so ``mkdocs build --strict`` reports it.
"""

from __future__ import annotations

import ast
import logging
import posixpath
import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

#: Repository files (outside ``docs/``) shown as a site page: repo path -> page's src_uri.
SITE_PAGES: dict[str, str] = {
    "README.md": "index.md",
    "CHANGELOG.md": "changelog.md",
    "bench/RESULTS.md": "benchmarks.md",
    "backends/storegate-hdf5/README.md": "backends/hdf5.md",
}

#: Repository files copied into the site as they are: repo path -> site path.
ASSETS: dict[str, str] = {
    "bench/gather_latency.png": "bench/gather_latency.png",
}

EXAMPLES_DIR = "examples"

#: Under the ``mkdocs`` logger, so ``--strict`` counts its warnings.
log = logging.getLogger("mkdocs.hooks.storegate_docs")

_LINK = re.compile(r"(?P<head>!?\[(?:[^\[\]]|\[[^\]]*\])*\])"
                   r"\((?P<target>[^)\s]+)(?P<title>\s+\"[^\"]*\")?\)")
_INCLUDE = re.compile(r"^<!--\s*storegate:include\s+(?P<path>\S+)"
                      r"(?:\s+section=\"(?P<section>[^\"]+)\")?\s*-->\s*$", re.MULTILINE)
_HEADING = re.compile(r"^(?P<hashes>#{1,6})\s+(?P<title>.*?)\s*#*\s*$")
_EXAMPLES = re.compile(r"^<!--\s*storegate:examples\s*-->\s*$", re.MULTILINE)
_FENCE = re.compile(r"^\s*(```|~~~)")
_ROLE = re.compile(r":(?:class|func|mod|meth|attr|data):`~?([^`]+)`")


def _root(config: MkDocsConfig) -> Path:
    return Path(config.config_file_path).resolve().parent


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Serve :data:`ASSETS` from their places in the repository."""
    root = _root(config)
    for repo_path, site_path in ASSETS.items():
        source = root / repo_path
        if source.is_file():
            files.append(File.generated(config, site_path, abs_src_path=str(source)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Expand the include and examples markers, then make links leaving ``docs/`` site links."""
    root = _root(config)
    src_uri = page.file.src_uri
    docs_prefix = Path(config.docs_dir).resolve().relative_to(root).as_posix()

    def include(match: re.Match[str]) -> str:
        repo_path = match.group("path")
        if not (root / repo_path).is_file():
            log.warning("%s: storegate:include of %s: no such file", src_uri, repo_path)
            return ""
        text = (root / repo_path).read_text(encoding="utf-8")
        if match.group("section"):
            text = _section(text, match.group("section"))
            if not text:
                log.warning("%s: storegate:include: %s has no section titled %r", src_uri,
                            repo_path, match.group("section"))
        else:
            text = re.sub(r"\A\s*# [^\n]*\n", "", text, count=1)
        text = _escape_brackets(text)
        return _rewrite_links(text, repo_path, src_uri, root, docs_prefix, from_docs=False)

    markdown = _INCLUDE.sub(include, markdown)
    if _EXAMPLES.search(markdown):
        related = page.meta.get("related", {}) or {}
        markdown = _EXAMPLES.sub(lambda _m: _examples_section(root, related), markdown)
    return _rewrite_links(markdown, f"{docs_prefix}/{src_uri}", src_uri, root, docs_prefix,
                          from_docs=True)


def _rewrite_links(text: str, base_repo_path: str, page_uri: str, root: Path, docs_prefix: str,
                   *, from_docs: bool) -> str:
    """Rewrite the Markdown links of ``text`` (a file at ``base_repo_path``) for ``page_uri``."""
    page_dir = posixpath.dirname(page_uri) or "."

    def fix(match: re.Match[str]) -> str:
        target = match.group("target")
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith(("#", "/")):
            return match.group(0)
        path, sep, fragment = target.partition("#")
        repo_target = posixpath.normpath(posixpath.join(posixpath.dirname(base_repo_path), path))
        site_target: str | None = None
        if repo_target.startswith(docs_prefix + "/"):
            if from_docs:
                return match.group(0)
            site_target = repo_target[len(docs_prefix) + 1:]
        elif repo_target in SITE_PAGES:
            site_target = SITE_PAGES[repo_target]
        elif repo_target in ASSETS:
            site_target = ASSETS[repo_target]
        elif (posixpath.dirname(repo_target) == EXAMPLES_DIR and repo_target.endswith(".py")
              and (root / repo_target).is_file()):
            site_target, sep, fragment = "examples.md", "#", _example_anchor(repo_target)
        if site_target is None:
            return match.group(0)
        new = posixpath.relpath(site_target, page_dir) + (sep + fragment if sep else "")
        return f"{match.group('head')}({new}{match.group('title') or ''})"

    out: list[str] = []
    in_fence = False
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
        out.append(line if in_fence else _LINK.sub(fix, line))
    return "".join(out)


def _section(text: str, title: str) -> str:
    """The body of the section headed ``title`` (up to the next heading of its level, or of
    level 2 for a level-1 title: a README's preamble)."""
    lines = text.splitlines(keepends=True)
    start: int | None = None
    end_level = 0
    in_fence = False
    for i, line in enumerate(lines):
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        heading = None if in_fence else _HEADING.match(line)
        if heading is None:
            continue
        level = len(heading.group("hashes"))
        if start is None:
            if heading.group("title") == title:
                start, end_level = i + 1, max(level, 2)
        elif level <= end_level:
            return "".join(lines[start:i])
    if start is None:
        return ""
    return "".join(lines[start:])


def _escape_brackets(text: str) -> str:
    """Escape brackets that would read as reference links (``sg['train']['x']`` in a table).

    GitHub shows an undefined ``[a][b]`` as it is; Python-Markdown's autorefs would report it
    as a missing cross-reference. Text in code spans, fenced blocks and parts holding an inline
    link (``](``) are left alone.
    """
    out: list[str] = []
    in_fence = False
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
        if in_fence or "][" not in line:
            out.append(line)
            continue
        pieces = re.split(r"(`+[^`]*`+)", line)
        for i, piece in enumerate(pieces):
            if i % 2 == 0 and "][" in piece and "](" not in piece:
                pieces[i] = piece.replace("[", "\\[").replace("]", "\\]")
        out.append("".join(pieces))
    return "".join(out)


def _example_anchor(repo_path: str) -> str:
    return posixpath.splitext(posixpath.basename(repo_path))[0].replace("_", "-")


def _examples_section(root: Path, related: dict[str, list[str]]) -> str:
    """A list of ``examples/*.py`` (one line each), then a section per script from its own
    docstring. Scripts come in the order of ``related``, then by name."""
    scripts = [p for p in (root / EXAMPLES_DIR).glob("*.py") if not p.name.startswith("_")]
    order = list(related)
    scripts.sort(key=lambda p: (order.index(p.stem) if p.stem in order else len(order), p.name))
    index: list[str] = []
    parts: list[str] = []
    for script in scripts:
        repo_path = f"{EXAMPLES_DIR}/{script.name}"
        anchor = _example_anchor(repo_path)
        doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
        summary = _markdown(" ".join(doc.split("\n\n", 1)[0].split())) or script.stem
        run = re.search(r"``(python [^`]+)``", doc)
        command = " ".join(run.group(1).split()) if run else f"python {repo_path}"
        index.append(f"- [`{repo_path}`](#{anchor}) — {summary}")
        section = [f"## `{repo_path}` {{ #{anchor} }}", "", summary, "", "```bash", command,
                   "```", ""]
        pages = related.get(script.stem) or []
        if pages:
            section += [f"Explained in: {', '.join(pages)}.", ""]
        section += [
            f'??? example "Source: {repo_path}"',
            "",
            "    ```python",
            f'    --8<-- "{repo_path}"',
            "    ```",
            "",
        ]
        parts.append("\n".join(section))
    return "\n".join(index) + "\n\n" + "\n".join(parts)


def _markdown(text: str) -> str:
    """reST inline markup of docstrings as Markdown: roles and double backquotes."""
    text = _ROLE.sub(lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text)
    return text.replace("``", "`")
