"""Tests for batch_style.views.serve: `batch-style serve OUTPUT` shows the report over HTTP."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import SMALL

from batch_style import orchestrator as runner


def test_serve_shows_the_report_on_this_machine(media_dir, write_manifest, cli):
    manifest = write_manifest([{"name": "pair", "content": str(media_dir / "photo.png"),
                                "style": str(media_dir / "style.png")}], defaults=SMALL)
    out = manifest.parent / "out"
    assert runner.run([manifest], runner.RunOptions(tiny=True, workers=0)).exit_code == 0
    process = cli.spawn("serve", out, "--port", "0")
    line = process.stdout.readline()
    match = re.fullmatch(rf"serving {re.escape(str(out))} at (http://127\.0\.0\.1:\d+/)report\.html "
                         r"\(Ctrl-C to stop\)\n", line)
    assert match, line + process.stderr.read() if process.poll() is not None else line
    base = match.group(1)
    with urllib.request.urlopen(base + "report.html", timeout=30) as response:
        assert response.read() == (out / "report.html").read_bytes()
    with urllib.request.urlopen(base + "pair/photo.png", timeout=30) as response:
        assert response.read() == (out / "pair" / "photo.png").read_bytes()  # the full size
    with pytest.raises(urllib.error.HTTPError):  # the folder only
        urllib.request.urlopen(base + "../manifest.yaml", timeout=30)


def test_serve_wants_a_run_folder(tmp_path, cli):
    result = cli.run("serve", tmp_path, "--port", "0")
    assert result.returncode == 1
    assert "no batch-style run here" in result.stderr and len(result.stderr.splitlines()) == 1


# -- a hostile folder ----------------------------------------------------------------------------
def bare_run(folder: Path) -> Path:
    """A run folder with an empty plan and a report, and what a careless user left in it."""
    out = folder / "out"
    (out / ".batch_style").mkdir(parents=True)
    (out / ".batch_style/plan.json").write_text(json.dumps({"jobs": [], "units": [],
                                                            "videos": []}))
    (out / "report.html").write_text("<p>the report</p>")
    (out / "a").mkdir()
    (out / "a/inside.png").write_bytes(b"a result")
    (folder / "secret.txt").write_text("not the run's")
    (out / "a/passwd.png").symlink_to(folder / "secret.txt")
    (out / "a/etc").symlink_to("/etc")
    (out / "a/same.png").symlink_to(out / "a/inside.png")  # a link that stays inside is fine
    os.mkfifo(out / "a/fifo.png")
    return out


def start(cli, out: Path, *more: str):
    process = cli.spawn("serve", out, "--port", "0", *more)
    line = process.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    assert match, line + (process.stderr.read() if process.poll() is not None else "")
    return process, int(match.group(1))


def ask(port: int, path: str) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_serve_gives_only_regular_files_inside_the_folder(tmp_path, cli):
    out = bare_run(tmp_path)
    process, port = start(cli, out)
    assert ask(port, "/a/inside.png")[::2] == (200, b"a result")
    assert ask(port, "/a/same.png")[::2] == (200, b"a result")
    for path in ("/a/passwd.png", "/a/etc", "/a/etc/passwd", "/a/", "/.batch_style/",
                 "/a/fifo.png", "/%00", "/a/inside.png%00.txt", "/../secret.txt",
                 "/%2e%2e/secret.txt"):
        status, _, body = ask(port, path)  # a FIFO used to hold a thread and the answer for good
        assert status == 404, path
        assert b"not the run's" not in body and b"root:" not in body and b"<li>" not in body
    status, headers, _ = ask(port, "/")  # the bare address: the report, not a listing
    assert status == 302 and headers["Location"] == "/report.html"
    assert ask(port, "/favicon.ico")[0] == 204  # the browser's own request: no 404 in its console
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert "Traceback" not in stderr, stderr


def test_serve_says_in_one_line_when_it_cannot_listen(tmp_path, cli):
    out = bare_run(tmp_path)
    process, port = start(cli, out)
    taken = cli.run("serve", out, "--port", port)
    assert taken.returncode == 2
    assert taken.stderr.splitlines() == [f"batch-style: error: --port: cannot listen on "
                                         f"127.0.0.1:{port}: Address already in use"]
    elsewhere = cli.run("serve", out, "--port", "0", "--bind", "192.0.2.1")  # TEST-NET-1
    assert elsewhere.returncode == 2
    assert elsewhere.stderr.splitlines() == ["batch-style: error: --bind: cannot listen on "
                                             "192.0.2.1:0: Cannot assign requested address"]
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)
