"""README.md's two set-up commands are well-formed (CI runs them verbatim in a fresh venv,
through ``.ci/readme_commands.py``): command 1 installs storegate with the pinned torch and runs
examples that exist, command 2 installs the test extra and runs pytest."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HELPER = ROOT / ".ci" / "readme_commands.py"


def command(n: int, readme: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(HELPER), str(n)]
    if readme is not None:
        args += ["--readme", str(readme)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def steps(line: str) -> list[list[str]]:
    """A command line as its ``&&``-joined steps, each split like a shell would."""
    parts = [shlex.split(part) for part in line.split("&&")]
    assert all(parts), f"an empty step in {line!r}"
    return parts


def extras() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found: dict[str, list[str]] = project["optional-dependencies"]
    return found


def pip_install(step: list[str]) -> tuple[list[str], list[str]]:
    """The requirement arguments of a ``pip install`` step and the options."""
    assert step[:2] == ["pip", "install"] or step[:4] == ["python", "-m", "pip", "install"], step
    rest = step[2:] if step[0] == "pip" else step[4:]
    return [a for a in rest if not a.startswith("-")], [a for a in rest if a.startswith("-")]


def test_helper_prints_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"^```bash\n(.*?)^```", text, re.S | re.M)
    assert block, "README.md has no ```bash block"
    lines = block.group(1).splitlines()
    assert len(lines) == 2, lines
    for n in (1, 2):
        res = command(n)
        assert res.returncode == 0, res.stderr
        assert res.stdout == lines[n - 1].strip() + "\n"


def test_command_1_installs_pinned_torch_and_runs_examples() -> None:
    first, *runs = steps(command(1).stdout.strip())
    reqs, _ = pip_install(first)
    pins = [r for r in reqs if r.startswith("torch==")]
    assert len(pins) == 1, f"command 1 must pin torch exactly once: {reqs}"
    version = pins[0].removeprefix("torch==")
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), pins[0]
    floor = next(d for d in extras()["torch"] if d.startswith("torch>="))
    low = tuple(int(p) for p in floor.removeprefix("torch>=").split("."))
    assert tuple(int(p) for p in version.split("."))[: len(low)] >= low, (pins[0], floor)
    ci_pin = re.search(r"torch==([\d.]+)", (ROOT / ".ci" / "run").read_text())
    if ci_pin:  # CI installs that wheel first; the README must name the same one
        assert ci_pin.group(1) == version, (pins[0], ci_pin.group(0))
    assert ".[torch]" in reqs, f"command 1 must install the project with its torch extra: {reqs}"
    assert runs, "command 1 runs no example"
    for run in runs:
        assert run[0] == "python" and run[1].startswith("examples/"), run
        assert (ROOT / run[1]).is_file(), f"{run[1]} does not exist"


def test_command_2_installs_test_extra_and_runs_pytest() -> None:
    install, run = steps(command(2).stdout.strip())
    reqs, opts = pip_install(install)
    assert reqs == [".[test]", "./backends/storegate-hdf5"], reqs
    assert (ROOT / "backends" / "storegate-hdf5" / "pyproject.toml").is_file()
    assert set(opts) <= {"-e", "--editable", "-q"}, opts
    assert "test" in extras() and any(d.startswith("pytest") for d in extras()["test"])
    assert run[:3] == ["python", "-m", "pytest"], run


@pytest.mark.parametrize("text", [
    "# no block\n",
    "```bash\npip install .\n```\n",
    "```bash\npip install .\npytest\npytest\n```\n",
    "```bash\npip install .\n\n```\n",
    "```bash\npip install .\npytest\n",
], ids=["none", "one-line", "three-lines", "blank-line", "unclosed"])
def test_helper_refuses_a_malformed_readme(tmp_path: Path, text: str) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(text)
    res = command(1, readme)
    assert res.returncode == 2 and res.stdout == ""
    assert "README.md" in res.stderr and "bash" in res.stderr
