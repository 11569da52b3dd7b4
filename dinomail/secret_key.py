"""SECRET_KEY without an insecure default: generated once into the state directory."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from pathlib import Path

from dinomail.settings import Settings, SettingsError

SECRET_KEY_FILE = "secret_key"
MIN_SECRET_KEY_LENGTH = 32

log = logging.getLogger("dinomail")


def ensure_secret_key(settings: Settings) -> Settings:
    """Settings with a SECRET_KEY: the configured one, else the one kept in STATE_DIR (made
    on first run, readable by the service's user only)."""
    if settings.SECRET_KEY:
        if len(settings.SECRET_KEY) < MIN_SECRET_KEY_LENGTH:
            raise SettingsError(
                "SECRET_KEY", f"must be at least {MIN_SECRET_KEY_LENGTH} characters long"
            )
        return settings
    path = Path(settings.STATE_DIR) / SECRET_KEY_FILE
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    except OSError as error:
        raise SettingsError("SECRET_KEY", f"cannot read {path}: {error.strerror}") from None
    if not key:
        key = secrets.token_urlsafe(48)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(key + "\n")
        except OSError as error:
            raise SettingsError(
                "SECRET_KEY", f"not set, and cannot be saved to {path}: {error.strerror}"
            ) from None
        log.warning("SECRET_KEY was not set: generated a new one into %s", path)
    return dataclasses.replace(settings, SECRET_KEY=key)
