"""Print set-up command N (1 or 2) of README.md, so CI can run it verbatim in a fresh venv.

The commands are the two lines of the first ```bash block of README.md: 1 installs storegate
with its PyTorch layer and runs examples, 2 installs the test dependencies and runs the tests.

Usage: ``python .ci/readme_commands.py N [--readme PATH]``; e.g. in CI::

    bash -euo pipefail -c "$(python .ci/readme_commands.py 1)"

Exit status 2 (with a message on stderr) when the README does not have that block of exactly
two commands.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


class ReadmeError(ValueError):
    """README.md does not have the expected block of set-up commands."""


def setup_commands(text: str) -> list[str]:
    """The lines of the first ```bash block of ``text`` (a README), which must be exactly two
    non-empty commands.

    >>> setup_commands("# x\\n```bash\\npip install a\\npytest\\n```\\n")
    ['pip install a', 'pytest']
    """
    lines = text.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "```bash")
    except StopIteration:
        raise ReadmeError("README has no ```bash block") from None
    try:
        end = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == "```")
    except StopIteration:
        raise ReadmeError(f"the ```bash block at line {start + 1} is not closed") from None
    commands = [line.strip() for line in lines[start + 1:end]]
    if len(commands) != 2 or not all(commands):
        raise ReadmeError(f"the first ```bash block (line {start + 1}) must hold exactly two "
                          f"non-empty lines (the set-up commands), found {commands!r}")
    return commands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, choices=(1, 2), help="which command")
    parser.add_argument("--readme", type=Path, default=README, help="the README to read")
    args = parser.parse_args(argv)
    try:
        commands = setup_commands(args.readme.read_text(encoding="utf-8"))
    except (OSError, ReadmeError) as err:
        print(f"readme_commands: {args.readme}: {err}", file=sys.stderr)
        return 2
    print(commands[args.n - 1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
