"""The photo's ICC colour profile that a result keeps: only one a result can carry."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

from PIL import Image, ImageCms

log = logging.getLogger("batch_style")

# Pillow refuses to open a PNG whose iCCP chunk inflates past 1 MiB (PngImagePlugin.
# MAX_TEXT_CHUNK), and a JPEG holds at most 255 APP2 segments (~16.7 MB): a larger profile
# would make an unreadable result or be lost. Real RGB profiles are a few kB.
MAX_PROFILE_BYTES = 1 << 20

_DECODE_ERRORS = (OSError, ValueError, EOFError, SyntaxError)


def result_profile(photo: Path) -> bytes | None:
    """The photo's embedded ICC profile when a result may embed it: it parses, describes RGB
    and is under MAX_PROFILE_BYTES. Otherwise None, with one warning naming the photo (the
    result is then written without one: sRGB, as most viewers assume)."""
    try:
        with warnings.catch_warnings(), Image.open(photo) as im:
            warnings.simplefilter("ignore")
            data = im.info.get("icc_profile") or None
    except _DECODE_ERRORS:
        return None
    if data is None:
        return None
    problem = _problem(data)
    if problem is None:
        return data
    log.warning("%s: its ICC colour profile is %s; the result is written without it (as sRGB)",
                photo, problem)
    return None


def _problem(data: bytes) -> str | None:
    if len(data) >= MAX_PROFILE_BYTES:
        return f"{len(data):,} bytes, over the {MAX_PROFILE_BYTES:,} a result can carry"
    try:
        space = ImageCms.ImageCmsProfile(io.BytesIO(data)).profile.xcolor_space
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return "damaged (it cannot be parsed)"
    if space.strip() != "RGB":
        return f"for {space.strip() or 'an unknown'} colours, not RGB"
    return None
