"""Small pieces of HTML text: escaping, anchors, numbers, times, plurals."""

from __future__ import annotations

import html
import os
import time
from urllib.parse import quote


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def e(text) -> str:
    # A file name that is not UTF-8 shows its odd bytes as \udcff: the page stays UTF-8.
    shown = str(text).encode("utf-8", "backslashreplace").decode("utf-8")
    return html.escape(shown, quote=True)


def anchor(key: str) -> str:
    return "u-" + quote(os.fsencode(key), safe="")


def num(value) -> str:
    if value is None or not isinstance(value, (int, float)):
        return ""
    return f"{value:.3g}"


def value_text(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return "—" if value is None else str(value)


def clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def spread(items: list, n: int) -> list:
    if len(items) <= n:
        return list(items)
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]
