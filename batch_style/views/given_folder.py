"""The run folder that `status`, `report` and `serve` are given: a manifest given instead (an
easy slip) is followed to its `output:`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from batch_style.errors import UsageError
from batch_style.text import printable

MANIFEST_READ_BYTES = 1 << 20  # a manifest is a few KB; a bigger file is not one


def run_folder(text: str) -> Path:
    """The run's output folder that OUTPUT names. A manifest is followed to its `output:` (read
    cheaply: no validation, no images), which is said on stderr; UsageError where it cannot be."""
    path = Path(text)
    if not path.is_file():
        return path
    import yaml

    try:
        with open(path, "rb") as f:
            data = yaml.safe_load(f.read(MANIFEST_READ_BYTES))
    except (OSError, ValueError, yaml.YAMLError):
        data = None
    output = data.get("output") if isinstance(data, dict) else None
    if not isinstance(output, str) or not output.strip():
        raise UsageError("a file; expected a run's output folder (the `output:` of its "
                         "manifest)", file=text)
    folder = Path(os.path.normpath(path.parent / os.path.expanduser(output)))
    if not folder.is_dir():
        raise UsageError(f"this manifest's output folder '{folder}' does not exist yet: "
                         f"run it first", file=text, field="output")
    print(printable(f"batch-style: {text} is a manifest: its output folder is {folder}"),
          file=sys.stderr)
    return folder
