"""Errors a user can cause and fix; the entry points print them as one line, without a traceback."""

from pathlib import Path


class UserError(Exception):
    """Something in the user's config, data or environment is wrong; the message says what to do."""


class ConfigError(UserError):
    """A config value is out of range or makes no sense with another one."""


class SweepError(UserError):
    """The sweep file or the launcher's options cannot work; the message says what to change."""


def printable(text: object) -> str:
    """`text` on one line that a terminal shows as it is: a newline, a control character or a byte
    that is not UTF-8 (a path's) appears as its escape, so the error stays one line and names it."""
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in str(text))


def resolved(path: Path, what: str) -> Path:
    """`path` made absolute, its links followed; a link that leads back to itself is the user's to fix."""
    try:
        return path.resolve()
    except RuntimeError:  # what resolve() raises on a symbolic link loop
        raise UserError(f"{what} {path}: a symbolic link loop, not a real path; give one that is not") from None
