"""Running Postfix's own tools (postmap) with a private configuration directory."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

POSTMAP = shutil.which("postmap") or "/usr/sbin/postmap"


def have_postmap() -> bool:
    return Path(POSTMAP).exists()


def postmap_config(directory: Path) -> Path:
    """A configuration directory postmap accepts: a main.cf with nothing but the level."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.cf").write_text("compatibility_level = 3.6\n")
    return directory


def postmap_query(config: Path, key: str, table: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POSTMAP, "-c", str(config), "-q", key, table],
        capture_output=True, text=True, timeout=30,
    )
