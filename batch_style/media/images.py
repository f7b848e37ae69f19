"""Reading, resizing, colour handling and writing of images (float32 RGB in [0,1]); GIFs: gif.py."""

from __future__ import annotations

import contextlib
import logging
import math
import struct
import warnings
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from batch_style.atomic import atomic_path
from batch_style.errors import UserError
from batch_style.text import close_file_name

log = logging.getLogger("batch_style")

_MPX = 1_000_000  # pixels per megapixel
_UINT8_MAX = 255.0
_UINT16_MAX = 65535.0

# What Pillow raises while decoding a damaged file (truncated data, bad tiles, bad EXIF blocks).
_DECODE_ERRORS = (OSError, ValueError, EOFError, SyntaxError)

# Output formats by file suffix: Pillow format name and save options.
IMAGE_FORMATS: dict[str, tuple[str, dict]] = {
    ".png": ("PNG", {}),
    ".jpg": ("JPEG", {"quality": 95, "subsampling": 0}),  # 4:4:4: styles have fine colour detail
    ".jpeg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".webp": ("WEBP", {"quality": 95, "method": 6}),  # method 6: smallest file, ~0.1 s at 1 MP
}

# ITU-R BT.601 luma and the YIQ chroma axes, as used by Gatys et al. (2016) for colour preservation.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.595716, -0.274453, -0.321263],
                        [0.211456, -0.522591, 0.311135]], dtype=np.float64)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)
_STD_FLOOR = 1e-6  # luminance std below this is a flat image: match the mean only


# ----- reading


def probe_image(path: Path, max_pixels: int) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels.

    Raises UserError for a missing or empty file, a file Pillow cannot identify, and an image with
    more than `max_pixels` pixels. Pillow's own decompression-bomb guard stays on underneath: its
    hard limit (2 × Image.MAX_IMAGE_PIXELS, about 179 Mpx) refuses an image whatever max_pixels
    says; its warning (over Image.MAX_IMAGE_PIXELS) is an error unless max_pixels is higher.
    """
    path = Path(path)
    if not path.is_file():
        close = None if path.exists() else close_file_name(path)
        raise UserError("not a file" if path.exists() else "no such file" + (
            f" (did you mean '{path.with_name(close)}'?)" if close else ""), file=path)
    if path.stat().st_size == 0:
        raise UserError("not an image: the file is empty (0 bytes)", file=path)
    try:
        with _bomb_guard(path, max_pixels), Image.open(path) as im:
            width, height = im.size
            if _orientation(im) in _SIDEWAYS:  # the upright picture's size, as load_image's
                width, height = height, width
    except UnidentifiedImageError:
        raise UserError("not an image: cannot identify image file", file=path) from None
    except _DECODE_ERRORS as e:
        raise UserError(f"cannot read image: {e}", file=path) from None
    if width * height > max_pixels:
        raise UserError(f"image is {width}\u00d7{height} = {pixels_text(width * height)}, over the "
                        f"limit of {pixels_text(max_pixels)} (setting max_pixels)", file=path)
    return width, height


def pixels_text(pixels: int) -> str:
    """A pixel count for people: '81.0 Mpx', or '1,536 px' where megapixels would say 0.0."""
    return f"{pixels / _MPX:.1f} Mpx" if pixels >= _MPX // 10 else f"{pixels:,} px"


def check_image(path: Path, max_pixels: int) -> tuple[int, int]:
    """probe_image, then read the whole file as cheaply as it can be, so that a truncated or
    corrupt image is found by `validate` rather than half-way through a run.

    PNG: every chunk and its CRC (verify(), no decompression). JPEG: decoded at 1/8 scale (draft
    mode still walks all the entropy-coded data). Other formats: decoded.
    """
    size = probe_image(path, max_pixels)
    path = Path(path)
    try:
        with _bomb_guard(path, max_pixels), Image.open(path) as im:
            if im.format == "PNG":
                im.verify()
            else:
                im.draft("RGB", (1, 1))
                im.load()
    except _DECODE_ERRORS as e:
        raise UserError(f"truncated or corrupt image: {e}", file=path) from None
    return size


def load_image(path: Path, max_pixels: int) -> np.ndarray:
    """The image as float32 RGB in [0,1], H×W×3, upright (EXIF orientation applied).

    The size is checked from the header first, so an oversized image is refused before any
    decoding. Transparent images are composited onto white; 16-bit greyscale keeps its precision.
    """
    path = Path(path)
    probe_image(path, max_pixels)
    try:
        with _bomb_guard(path, max_pixels), Image.open(path) as im:
            turn = _TRANSPOSE.get(_orientation(im))
            im.load()
            return _to_rgb_float(im.transpose(turn) if turn is not None else im)
    except _DECODE_ERRORS as e:
        # Pillow says "image file is truncated" and the like; ImageFile.LOAD_TRUNCATED_IMAGES stays
        # off because a silently grey bottom half is worse than an error.
        raise UserError(f"truncated or corrupt image: {e}", file=path) from None


# EXIF orientations: how the stored pixels turn upright (as ImageOps.exif_transpose turns them).
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}
_SIDEWAYS = (5, 6, 7, 8)  # stored on its side: the upright picture's width is the stored height


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1: upright) from the header, without decoding the pixels, so that
    probe_image and load_image agree (a PNG's eXIf chunk after its pixels is not looked for)."""
    try:
        if im.format == "PNG":
            exif = Image.Exif()
            if im.info.get("exif"):
                exif.load(im.info["exif"])
        else:
            exif = im.getexif()
        value = exif.get(0x0112, 1)  # the Orientation tag
    except _DECODE_ERRORS:
        return 1
    return value if isinstance(value, int) else 1


@contextlib.contextmanager
def _bomb_guard(path: Path, max_pixels: int) -> Iterator[None]:
    """Turn Pillow's decompression-bomb warning and error into a UserError for `path`."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Over MAX_IMAGE_PIXELS Pillow warns; that is an error unless our own limit is higher
        # (checked from the header right after). Over twice that, Pillow raises regardless.
        limit = Image.MAX_IMAGE_PIXELS
        wanted = "ignore" if limit is not None and max_pixels > limit else "error"
        warnings.simplefilter(wanted, Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise UserError(f"image is over Pillow's decompression-bomb limit: {e}",
                            file=path) from None
    # Pillow's other warnings (corrupt EXIF, odd chunks) name its own source file: say which
    # image they are about instead, once each.
    for message in dict.fromkeys(str(w.message) for w in caught):
        log.warning("%s: %s", path, message)


def _to_rgb_float(im: Image.Image) -> np.ndarray:
    """Any Pillow mode to float32 RGB in [0,1]."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Pillow's convert("RGB") clips 16-bit values at 255 instead of scaling them.
        grey = np.asarray(im, dtype=np.float32) / _UINT16_MAX
        return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2)
    if im.mode == "F":
        return np.repeat(np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)[..., None], 3, axis=2)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / _UINT8_MAX
        alpha = rgba[..., 3:]
        return rgba[..., :3] * alpha + (1.0 - alpha)  # onto white
    return np.asarray(im.convert("RGB"), dtype=np.float32) / _UINT8_MAX


# ----- geometry


def fit_size(width: int, height: int, longest: int) -> tuple[int, int]:
    """(w, h) with the longest side equal to `longest`, aspect ratio kept, each side >= 1."""
    scale = longest / max(width, height)
    # floor(x + 0.5), not round(): Python's round() rounds halves to even.
    return (max(1, math.floor(width * scale + 0.5)), max(1, math.floor(height * scale + 0.5)))


# A mask is resized with its picture, so it must have the picture's shape: aspect ratios may
# differ by this much (rounding of a resized copy), no more.
ASPECT_TOLERANCE = 0.01


def aspect_differs(size: tuple[int, int], other: tuple[int, int]) -> bool:
    """Whether two (w, h) sizes' aspect ratios differ by more than ASPECT_TOLERANCE."""
    return abs((size[0] / size[1]) / (other[0] / other[1]) - 1.0) > ASPECT_TOLERANCE


def scale_sizes(width: int, height: int, longest: int, scales: int,
                min_side: int) -> list[tuple[int, int]]:
    """(w, h) of each coarse-to-fine level for a width×height image, coarsest first: each half
    the next, the last with `longest` px on its longest side; levels with a side under
    `min_side` are left out (so the list is empty when even the last one is too small)."""
    sizes = []
    for level in reversed(range(scales)):
        w, h = fit_size(width, height, max(round(longest / 2 ** level), 1))
        if min(w, h) >= min_side:
            sizes.append((w, h))
    return sizes


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resample an H×W×C float image to `size` = (w, h): Lanczos when shrinking, bicubic when
    enlarging, per channel in Pillow's 32-bit float mode (no 8-bit banding); clipped to [0,1].

    The seed squashed every image to 224×224 with nearest-neighbour sampling; callers now keep the
    aspect ratio (fit_size) and get antialiased resampling.
    """
    width, height = size
    src_height, src_width = image.shape[:2]
    if (width, height) == (src_width, src_height):
        return image.astype(np.float32, copy=True)
    enlarging = width >= src_width and height >= src_height
    method = Image.Resampling.BICUBIC if enlarging else Image.Resampling.LANCZOS
    channels = image[..., None] if image.ndim == 2 else image
    resized = [np.asarray(Image.fromarray(np.ascontiguousarray(channels[..., c], np.float32), "F")
                          .resize((width, height), method))
               for c in range(channels.shape[2])]
    out = np.stack(resized, axis=2)
    out = out[..., 0] if image.ndim == 2 else out
    # Lanczos and bicubic overshoot at edges (ringing); values outside [0,1] are not colours.
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


# ----- writing


def to_float(image: np.ndarray) -> np.ndarray:
    """uint8 to float32 in [0,1]; float images become float32 unchanged otherwise."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / _UINT8_MAX
    return np.asarray(image, np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float [0,1] to uint8 (rounded, clipped); uint8 passes through unchanged."""
    if image.dtype == np.uint8:
        return image
    return np.clip(np.rint(np.asarray(image, np.float32) * _UINT8_MAX), 0, 255).astype(np.uint8)


def save_image(image: np.ndarray, path: Path, *, bit_depth: int = 8,
               icc_profile: bytes | None = None) -> None:
    """Write an RGB image atomically; the format follows the suffix (see IMAGE_FORMATS).

    `bit_depth` 16 writes a 16-bit PNG (prints: the optimizer's float values without 8-bit
    banding); `icc_profile` (the photo's, profiles.result_profile()) is embedded, so the result's colours
    mean what the photo's did.
    """
    path = Path(path)
    fmt, options = _image_format(path)
    if bit_depth == 16:
        if fmt != "PNG":
            raise UserError(f"16 bits per channel are written as PNG only, not {fmt}", file=path)
        with atomic_path(path) as tmp:
            tmp.write_bytes(_png16(image, icc_profile))
        return
    if icc_profile:
        options = {**options, "icc_profile": icc_profile}
    pil = Image.fromarray(to_uint8(image))
    with atomic_path(path) as tmp:
        pil.save(tmp, format=fmt, **options)


def _png16(image: np.ndarray, icc_profile: bytes | None) -> bytes:
    """A 16-bit RGB PNG (Pillow writes 16-bit greyscale only): IHDR, iCCP, IDAT, IEND."""
    height, width = image.shape[:2]
    values = np.rint(np.clip(np.asarray(image, np.float64), 0.0, 1.0) * _UINT16_MAX)
    rows = np.zeros((height, 1 + width * 6), np.uint8)  # each row: filter type 0, then samples
    rows[:, 1:] = values.astype(">u2").view(np.uint8).reshape(height, width * 6)
    chunks = [(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))]
    if icc_profile:
        chunks.append((b"iCCP", b"ICC profile\0\0" + zlib.compress(icc_profile)))
    chunks += [(b"IDAT", zlib.compress(rows.tobytes(), 6)), (b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        for kind, data in chunks)


def _image_format(path: Path) -> tuple[str, dict]:
    try:
        return IMAGE_FORMATS[path.suffix.lower()]
    except KeyError:
        raise UserError(f"cannot write images with suffix {path.suffix!r}; expected one of "
                        f"{', '.join(IMAGE_FORMATS)}", file=path) from None


# ----- colour


def luminance(image: np.ndarray) -> np.ndarray:
    """Y (BT.601 luma) of an RGB image, H×W."""
    return np.asarray(image, np.float64) @ _RGB_TO_YIQ[0]


def match_luminance(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`image` with its luminance shifted and scaled to the mean and std of `reference`'s, its
    chroma (I, Q) unchanged; float32 RGB clipped to [0,1].

    Gatys et al. (2016) do this to the style image before luminance-only transfer, so the style's
    brightness statistics do not fight the content's.
    """
    yiq = _to_yiq(image)
    yiq[..., 0] = _matched(yiq[..., 0], luminance(reference))
    return _from_yiq(yiq)


def preserve_colors(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The content's colours with the stylized image's luminance (Gatys et al. 2016, "Preserving
    colour in neural artistic style transfer", luminance-only transfer).

    Y comes from `stylized`, with its mean and std matched to the content's Y; I and Q come from
    `content` (resized to the stylized image's size when they differ).
    """
    height, width = stylized.shape[:2]
    if content.shape[:2] != (height, width):
        content = resize(content, (width, height))
    yiq = _to_yiq(content)
    yiq[..., 0] = _matched(luminance(stylized), yiq[..., 0])
    return _from_yiq(yiq)


def _matched(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    std = values.std()
    centred = values - values.mean()
    if std > _STD_FLOOR:
        centred *= reference.std() / std
    return centred + reference.mean()


def _to_yiq(image: np.ndarray) -> np.ndarray:
    return np.asarray(image, np.float64) @ _RGB_TO_YIQ.T


def _from_yiq(yiq: np.ndarray) -> np.ndarray:
    return np.clip(yiq @ _YIQ_TO_RGB.T, 0.0, 1.0).astype(np.float32)


# Colour statistics: the mean (3,) and covariance (3×3) of an image's RGB values, and the affine
# map between two such (Gatys et al. 2016, "Preserving colour in neural artistic style
# transfer", colour histogram matching). The least variance an image's colours are taken to have
# along any axis, so a flat image (a variance of ~0) is not stretched to infinity: a standard
# deviation of 0.003 (under one level of 255).
_COLOR_FLOOR = 1e-5


def color_stats(image: np.ndarray, weights: np.ndarray | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
    """(mean (3,), covariance (3,3)) of an H×W×3 image's colours, each pixel counted by its
    weight (H×W, ≥ 0; None: equally). A region with no weight gives the whole image's."""
    pixels = np.asarray(image, np.float64).reshape(-1, 3)
    w = None if weights is None else np.asarray(weights, np.float64).reshape(-1)
    if w is None or w.sum() <= 0:
        w = np.ones(len(pixels))
    w = w / w.sum()
    mean = w @ pixels
    centred = pixels - mean
    return mean, (centred * w[:, None]).T @ centred


def mixed_stats(stats: list[tuple[np.ndarray, np.ndarray]],
                weights: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """The mean and covariance of the mixture of several images' colours, by weight."""
    w = np.asarray(list(weights), np.float64)
    w = w / w.sum()
    mean = sum(wk * m for wk, (m, _) in zip(w, stats))
    second = sum(wk * (c + np.outer(m, m)) for wk, (m, c) in zip(w, stats))
    return mean, second - np.outer(mean, mean)


def _power(cov: np.ndarray, power: float) -> np.ndarray:
    """cov^power of a symmetric 3×3 matrix, its eigenvalues floored at _COLOR_FLOOR."""
    values, vectors = np.linalg.eigh(cov)
    return (vectors * np.maximum(values, _COLOR_FLOOR) ** power) @ vectors.T


def match_colors(image: np.ndarray, mean: np.ndarray, cov: np.ndarray,
                 weights: np.ndarray | None = None) -> np.ndarray:
    """`image` with its colours (those of its weighted pixels, color_stats) moved to `mean` and
    `cov` by one affine map x ↦ A(x − μ) + mean, clipped to [0,1] (float32).

    A = cov^½ · Σ^-½ with symmetric square roots: of Gatys et al.'s two choices (this, from
    Hertzmann et al.'s Image Analogies, and a Cholesky factor) the one that rotates colours
    least; theirs too.
    """
    own_mean, own_cov = color_stats(image, weights)
    a = _power(cov, 0.5) @ _power(own_cov, -0.5)
    out = (np.asarray(image, np.float64) - own_mean) @ a.T + mean
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def load_mask(path: Path, max_pixels: int) -> np.ndarray:
    """A mask as float32 H×W in [0,1]: the image's luminance (white = 1; a colour image counts
    by its brightness, a transparent one is composited onto white first, as load_image does)."""
    return luminance(load_image(path, max_pixels)).astype(np.float32)


def is_black(mask: np.ndarray) -> bool:
    """Whether a mask selects nothing: no pixel would round to above 0 in 8 bits."""
    return float(np.max(mask, initial=0.0)) < 0.5 / _UINT8_MAX


# Why a mask black everywhere is refused (stylize, validate, a worker), by what it masks.
BLACK_MASK = {"result": "is black everywhere: its style would go nowhere (white marks where it "
                        "goes)",
              "style": "is black everywhere: its style would be taken from nothing (white marks "
                       "the part of the style image it comes from)"}
