"""A griffe extension (``extensions:`` of the mkdocstrings handler in ``mkdocs.yml``): show the
reST roles storegate's docstrings use (``:class:`~storegate.ragged.RaggedArray```,
``:func:`list_backends```) as code spans (`RaggedArray`, `list_backends`) instead of raw text.

The docstrings stay reST-flavoured numpy style for ``help()`` and doctests; only what the site
renders changes.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`(?P<tilde>~?)(?P<target>[^`]+)`")


def _code(match: re.Match[str]) -> str:
    target = match.group("target")
    return f"`{target.rsplit('.', 1)[-1] if match.group('tilde') else target}`"


class RstRoles(Extension):
    """Rewrite reST cross-reference roles in every docstring as Markdown code spans."""

    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_code, obj.docstring.value)
