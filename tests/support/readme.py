"""The commands the README tells a user to run, taken from the README itself, so a test runs
exactly what a user reads and the README cannot drift from the product."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def section(heading: str, readme: Path = README) -> str:
    """The text under `## heading` (or any level), up to the next heading of the same level."""
    text = readme.read_text(encoding="utf-8")
    match = re.search(rf"^(#+) {re.escape(heading)}\n", text, re.MULTILINE)
    if match is None:
        raise AssertionError(f"README has no section {heading!r}")
    level = len(match.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE).search(text, match.end())
    return text[match.end(): end.start() if end else len(text)]


def shell_blocks(heading: str, readme: Path = README) -> list[str]:
    """The ```sh blocks of a README section, in order."""
    return [body for lang, body in _FENCE.findall(section(heading, readme)) if lang == "sh"]


def run_block(block: str, cwd: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DINOMAIL_")}
    environ["PATH"] = f"{Path(sys.executable).parent}:{environ['PATH']}"
    environ.update(variables)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=cwd, env=environ,
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, f"{block}\n{result.stdout}\n{result.stderr}"
    return result
