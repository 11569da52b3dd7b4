"""Running a systemd unit's commands without systemd as PID 1: each ExecStartPre and ExecStart
as the unit's user and group, with its Environment=, WorkingDirectory= and UMask=, and the
variables systemd itself gives (STATE_DIRECTORY for StateDirectory=)."""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Unit:
    path: Path
    exec_start_pre: list[list[str]] = field(default_factory=list)
    exec_start: list[str] = field(default_factory=list)
    user: str = "root"
    group: str | None = None
    umask: int = 0o022
    working_directory: str | None = None
    environment: dict[str, str] = field(default_factory=dict)

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        environ = dict(base if base is not None else os.environ)
        environ = {k: v for k, v in environ.items() if not k.startswith("DINOMAIL_")}
        environ.update(self.environment)
        return environ

    def _popen_args(self) -> dict[str, object]:
        return {
            "user": self.user, "group": self.group or self.user, "extra_groups": [],
            "umask": self.umask, "cwd": self.working_directory, "env": self.env(),
        }

    def run_pre(self, timeout: float = 120) -> None:
        for command in self.exec_start_pre:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                    **self._popen_args())  # type: ignore[call-overload]
            if result.returncode != 0:
                raise AssertionError(f"{shlex.join(command)} failed:\n{result.stderr}")

    def start(self, log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as output:
            return subprocess.Popen(self.exec_start, stdin=subprocess.DEVNULL, stdout=output,
                                    stderr=subprocess.STDOUT,
                                    **self._popen_args())  # type: ignore[call-overload]


def read_unit(path: Path) -> Unit:
    unit = Unit(path)
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section != "[Service]" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if key == "ExecStartPre":
            unit.exec_start_pre.append(shlex.split(value.lstrip("-")))
        elif key == "ExecStart":
            unit.exec_start = shlex.split(value)
        elif key == "User":
            unit.user = value
        elif key == "Group":
            unit.group = value
        elif key == "UMask":
            unit.umask = int(value, 8)
        elif key == "WorkingDirectory":
            unit.working_directory = value.lstrip("-")
        elif key == "Environment":
            for assignment in shlex.split(value):
                name, _, setting = assignment.partition("=")
                unit.environment[name] = setting
        elif key == "StateDirectory":
            # systemd makes /var/lib/<name>; the install script made it (under DESTDIR).
            unit.environment.setdefault("STATE_DIRECTORY", "")
    if unit.environment.get("STATE_DIRECTORY") == "":
        unit.environment["STATE_DIRECTORY"] = unit.environment.get(
            "DINOMAIL_STATE_DIR", unit.working_directory or "")
    return unit
