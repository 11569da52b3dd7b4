"""The shipped systemd units are valid (`systemd-analyze verify`) and hardened."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = sorted((Path(__file__).parent.parent / "systemd").glob("*.service"))
HARDENING = ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
             "StateDirectory=dinomail", "RuntimeDirectory=dinomail", "User=dinomail")


def test_three_units_are_shipped() -> None:
    assert [unit.name for unit in UNITS] == [
        "dinomail-adminapi.service", "dinomail-lookupd.service", "dinomail.service",
    ]


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_unit_is_hardened(unit: Path) -> None:
    text = unit.read_text()
    for line in HARDENING:
        assert f"\n{line}\n" in text, line
    command = {"dinomail.service": "serve", "dinomail-lookupd.service": "lookupd",
               "dinomail-adminapi.service": "adminapi"}[unit.name]
    assert f"dinomail.toml {command}\n" in text


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is absent")
@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    # verify checks that the executable exists, so point it at the installed command.
    executable = Path(sys.executable).parent / "dinomail"
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/usr/local/bin/dinomail", str(executable)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    problems = [line for line in result.stderr.splitlines() if unit.name in line]
    assert result.returncode == 0 and not problems, result.stderr
