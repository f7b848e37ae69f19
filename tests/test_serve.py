"""Tests for batch_style.views.serve: `batch-style serve OUTPUT` shows the report over HTTP."""

from __future__ import annotations

import re
import urllib.error
import urllib.request

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
