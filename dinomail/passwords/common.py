"""The commonest passwords, which a new mailbox password may not be (NIST SP 800-63B 5.1.1.2:
refuse values from lists of commonly used or compromised passwords).

The list ships in the package (`common-passwords.txt`, its origin and licence in its header and
`common-passwords-LICENSE.txt`); it is read once, on first use.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

LIST_PATH = Path(__file__).with_name("common-passwords.txt")


@cache
def common_passwords() -> frozenset[str]:
    lines = LIST_PATH.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


def is_common(password: str) -> bool:
    """True when `password`, ignoring case, is on the list."""
    return password.lower() in common_passwords()
