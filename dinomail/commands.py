"""What a command says when it cannot do its job: one line and an exit status. Shared by the
CLI and the daemons it starts (`dinomail.service`), which import neither each other."""

from __future__ import annotations

from typing import NoReturn

EXIT_FAILURE = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A command cannot do its job; the message is the one line shown to the admin."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


def fail(message: str, status: int = EXIT_FAILURE) -> NoReturn:
    raise CommandError(message, status)
