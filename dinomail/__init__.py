"""DinoMail: the control plane of a Postfix + Dovecot mail server."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dinomail")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"
