"""Why a report was not stored."""

from __future__ import annotations


class ReportError(Exception):
    """A report file or message that cannot be stored; `str()` is the reason kept with it."""
