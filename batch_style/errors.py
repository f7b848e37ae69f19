"""The one exception type for mistakes a user can fix."""

from __future__ import annotations

import os


class UserError(Exception):
    """A mistake in a manifest, a command line or an input file.

    Shown to the user as one line, `FILE:LINE: FIELD: MESSAGE` with the parts that are known,
    and never with a traceback (unless --debug). Anything that is not a UserError is a bug.
    """

    def __init__(self, message: str, *, file: str | os.PathLike | None = None,
                 line: int | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.file = os.fspath(file) if file is not None else None
        self.line = line
        self.field = field

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file + (f":{self.line}" if self.line is not None else "") + ": "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class UserErrors(UserError):
    """Several user mistakes found at once (validation reports all of them, not the first)."""

    def __init__(self, errors: list[UserError]):
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class UsageError(UserError):
    """A mistake in what the command line names (not in a file's content): exit 2 whatever the
    command."""
