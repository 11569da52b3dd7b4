"""Running the real `dinomail` command in a subprocess, as an admin would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def dinomail(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    input: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DINOMAIL_")}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "dinomail", *args],
        capture_output=True, text=True, env=environ, cwd=cwd, input=input, timeout=timeout,
    )
