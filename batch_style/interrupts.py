"""Ctrl-C, remembered: whatever TensorFlow raises while a KeyboardInterrupt is on its way (a
StagingError, a SystemError), the command line ends as interrupted (130), not as a bug."""

from __future__ import annotations

import signal
import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C

_received: list[int] = []


def _on_sigint(signum, frame):
    _received.append(signum)
    raise KeyboardInterrupt


def install() -> None:
    """Record SIGINT, then raise KeyboardInterrupt as Python's own handler does. Where SIGINT is
    ignored (a background job of a shell without job control) it stays ignored."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def received() -> bool:
    """Whether Ctrl-C (SIGINT) reached this process since install()."""
    return bool(_received)


def exit_interrupted() -> None:
    """End the program as interrupted: one line, exit 130."""
    print("batch-style: interrupted", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)


def ignore_from_now() -> None:
    """The command has ended: a Ctrl-C while Python exits changes nothing of what it did."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
