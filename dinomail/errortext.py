"""An error in one line, for a log line or an answer: the one way DinoMail shortens them."""

from __future__ import annotations


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of an error's text (a driver's own message when SQLAlchemy wraps one;
    the SQL and the parameters follow on later lines), else its type's name; at most `limit`
    characters."""
    text = str(getattr(error, "orig", None) or error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if limit is None else line[:limit]
