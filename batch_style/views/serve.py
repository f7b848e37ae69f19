"""`batch-style serve`: the output folder over HTTP, to watch a run's report from another machine."""

from __future__ import annotations

import functools
import http.server
from collections.abc import Callable
from pathlib import Path

from batch_style.pipeline.state import run_folder


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # a line per request would bury the terminal
        pass


def serve(output_dir: Path, host: str = "127.0.0.1", port: int = 8000,
          ready: Callable[[str], None] = print) -> None:
    """Serve `output_dir` (read-only; Python's http.server) until interrupted; `ready` gets the
    report's address once the socket listens. Only on this machine unless `host` says otherwise:
    the folder holds the run's log and ledger too."""
    run_folder.read_plan(output_dir)  # a run folder, or the usual one-line error
    handler = functools.partial(_Quiet, directory=str(output_dir))
    with http.server.ThreadingHTTPServer((host, port), handler) as server:
        bound_host, bound_port = server.server_address[:2]
        ready(f"http://{bound_host}:{bound_port}/{run_folder.REPORT_NAME}")
        server.serve_forever()
