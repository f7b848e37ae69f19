"""Ctrl-C, remembered: whatever TensorFlow raises while a KeyboardInterrupt is on its way (a
StagingError, a SystemError), the command line ends as interrupted (130), not as a bug; and a
KeyboardInterrupt that some library swallowed is raised again at the next checkpoint."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C

_received: list[int] = []
_pending: list[int] = []  # Ctrl-Cs whose KeyboardInterrupt nobody has said it handled


def _on_sigint(signum, frame):
    _received.append(signum)
    _pending.append(signum)
    raise KeyboardInterrupt


def install() -> None:
    """Record SIGINT, then raise KeyboardInterrupt as Python's own handler does. Where SIGINT is
    ignored (a background job of a shell without job control) it stays ignored."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)


def received() -> bool:
    """Whether Ctrl-C (SIGINT) reached this process since install()."""
    return bool(_received)


def handled() -> None:
    """The KeyboardInterrupt of the Ctrl-Cs so far was caught and acted on (a run stopping)."""
    _pending.clear()


def check() -> None:
    """Raise KeyboardInterrupt again where a Ctrl-C's was swallowed on its way (a library's
    `except` around an import, a C extension's callback); for the main thread's loops."""
    if _pending and threading.current_thread() is threading.main_thread():
        _pending.clear()
        raise KeyboardInterrupt


@contextlib.contextmanager
def kept_from_children():
    """SIGINT blocked while worker processes are started: they inherit the mask, so a Ctrl-C
    (which a terminal sends the whole process group) cannot kill one with a traceback before it
    ignores SIGINT itself. A Ctrl-C meanwhile reaches this process on leaving, not lost."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def exit_interrupted() -> None:
    """End the program as interrupted: one line, exit 130."""
    print("batch-style: interrupted", file=sys.stderr)
    sys.exit(EXIT_INTERRUPTED)


def exit_with(code: int) -> None:
    """End the program with `code`. After a Ctrl-C, without Python's finalization: a
    KeyboardInterrupt that once crossed a C extension's PyRun_* call makes the interpreter end
    itself by SIGINT there, whatever code the command returned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the command has ended: nothing to stop
    if not _received:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
