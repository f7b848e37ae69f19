"""Text for people: durations, numbers, and names made safe to print."""

from __future__ import annotations

import logging


def printable(text: str) -> str:
    """`text` with every character that is not printable written as its escape (\\n, \\x1b,
    \\udcff for a byte of a file name that is not UTF-8): a file name can neither split a line,
    forge one, nor send codes to the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def duration(seconds: float) -> str:
    """'7s', '3m05s', '2h04m'."""
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def number(value) -> str:
    """A number as the README writes it: `1e4` and `1e11` rather than 10000.0, `30` and `0.02`
    as typed, `true`/`false` as in YAML. Round numbers of 10 000 or more take the exponent form
    (`5e7`); anything else keeps its digits."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, (int, float)):
        return str(value)
    if value and abs(value) >= 1e4:
        mantissa, exponent = f"{value:.1e}".split("e")
        if float(mantissa) * 10 ** int(exponent) == value:  # two digits say it all
            return f"{float(mantissa):g}e{int(exponent)}"
    if isinstance(value, int):
        return str(value)
    mantissa, _, exponent = f"{value:g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa  # 1e-06 → 1e-6


class EscapingFormatter(logging.Formatter):
    """Log lines whose arguments are printable(): names in them cannot break or forge a line.

    A record logged with `extra={"block": True}` (a traceback) keeps its line breaks.
    """

    def format(self, record: logging.LogRecord) -> str:
        if record.args and not getattr(record, "block", False):
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(printable(a) if isinstance(a, str) else a for a in args)
        return super().format(record)


def close_file_name(path) -> str | None:
    """The name in a missing file's folder closest to its own (a typo: `photo.jgp` for
    `photo.jpg`), or None."""
    import difflib
    import os

    folder, name = os.path.split(os.fspath(path))
    try:
        with os.scandir(folder or ".") as entries:
            names = [e.name for _, e in zip(range(10_000), entries) if not e.name.startswith(".")]
    except OSError:
        return None
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    return close[0] if close else None
