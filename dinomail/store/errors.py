"""What a store call can refuse, beside `dinomail.validation.ValidationError`."""

from __future__ import annotations

from collections.abc import Mapping


class StoreError(Exception):
    """Base of the store's refusals.

    `code` is the refusal's stable name (the API returns it, the pages translate by it) and
    `params` the values its sentence is made of; `message` is the English sentence, free to be
    reworded. `field` names the input at fault when there is one.
    """

    def __init__(
        self, message: str, field: str | None = None, *,
        code: str = "", params: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code
        self.params: dict[str, object] = dict(params or {})


class NotFound(StoreError):
    """No such object, or not one the caller may see (the two look alike on purpose)."""


class Conflict(StoreError):
    """The object would duplicate one that exists (a unique name or address)."""


class LimitExceeded(StoreError):
    """A domain limit (mailboxes, aliases, quota) forbids the write."""


class Forbidden(StoreError):
    """The caller may see the object but not do this to it (e.g. outside their domains)."""
