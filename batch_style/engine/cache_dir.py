"""The one folder of batch_style's caches: converted weights, XLA's compiled programs, autotune's figures."""

from __future__ import annotations

import os
from pathlib import Path

ENV_CACHE = "BATCH_STYLE_CACHE"  # names the folder; ~/.cache/batch_style when unset or empty


def cache_folder() -> Path:
    """$BATCH_STYLE_CACHE, or ~/.cache/batch_style; not created here (each user makes its part)."""
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "batch_style")
