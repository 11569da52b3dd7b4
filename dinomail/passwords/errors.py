"""The one error the password functions raise for anything that is not a plain wrong password."""

from __future__ import annotations


class PasswordSchemeError(ValueError):
    """An unknown scheme, a malformed stored hash, a missing user name or bad rounds.

    A wrong password is never this error: `verify_password` returns False for it. Raising
    instead of returning False keeps a broken configuration or database row visible.
    """


class UnknownSchemeError(PasswordSchemeError):
    """The scheme name (with its optional `.b64`/`.hex` suffix) is not one we know."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown password scheme {name!r}")
        self.name = name
