"""`batch-style serve`: the output folder over HTTP, to watch a run's report from another machine.

Only regular files inside the folder are served (never through a link out of it, never a FIFO,
never a listing): with `--bind 0.0.0.0` the whole network asks.
"""

from __future__ import annotations

import errno
import http.server
import mimetypes
import os
import posixpath
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from batch_style.errors import UserError
from batch_style.pipeline.state import run_folder, run_reader, safe_files


class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path  # the output folder (set on a subclass per server)
    server_version = "batch-style"

    def log_message(self, format, *args):  # a line per request would bury the terminal
        pass

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        path = urlsplit(self.path).path
        if path in ("", "/"):
            self.send_response(302)  # the bare address: the report, not a listing of the folder
            self.send_header("Location", "/" + run_folder.REPORT_NAME)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path == "/favicon.ico":
            self.send_response(204)  # the browser asks on its own: answer quietly, no 404
            self.end_headers()
            return
        fd = self._open(path)
        if fd is None:
            self.send_error(404, "not a file of this run")
            return
        with os.fdopen(fd, "rb") as f:
            kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(os.fstat(f.fileno()).st_size))
            self.send_header("Cache-Control", "no-cache")  # the live report changes
            self.end_headers()
            if body:
                shutil.copyfileobj(f, self.wfile)

    def _open(self, url_path: str) -> int | None:
        """A descriptor of the regular file inside the folder that `url_path` names, else None."""
        name = posixpath.normpath(unquote(url_path)).lstrip("/")
        if "\0" in name or name in ("", ".") or name.split("/")[0] == "..":
            return None
        path = self.root / name
        if not run_reader.regular_file(path, self.root):
            return None
        try:
            return safe_files.open_regular(path, os.O_RDONLY)
        except (OSError, UserError):
            return None  # gone, or swapped for something else since the check


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a browser that hangs up mid-file is no news; socketserver would print a traceback


def serve(output_dir: Path, host: str = "127.0.0.1", port: int = 8000,
          ready: Callable[[str], None] = print) -> None:
    """Serve `output_dir` (read-only) until interrupted; `ready` gets the report's address once
    the socket listens. Only on this machine unless `host` says otherwise: the folder holds the
    run's log and ledger too."""
    run_reader.read(output_dir)  # a run folder, or the usual one-line error
    handler = type("Handler", (_Handler,), {"root": Path(output_dir)})
    try:
        server = _Server((host, port), handler)
    except socket.gaierror as e:
        raise UserError(f"cannot listen on '{host}': {e.strerror}", field="--bind") from None
    except OSError as e:
        field = "--port" if e.errno in (errno.EADDRINUSE, errno.EACCES) else "--bind"
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                        field=field) from None
    with server:
        bound_host, bound_port = server.server_address[:2]
        ready(f"http://{bound_host}:{bound_port}/{run_folder.REPORT_NAME}")
        server.serve_forever()
