"""Tests for batch_style.media.images: generated images in tmp_path, no network, no model."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from batch_style.errors import UserError
from batch_style.media import gif, images, profiles

BIG = 50_000_000  # max_pixels where the limit is not the point


def ramp_rgb(width=64, height=48) -> np.ndarray:
    """A smooth float32 RGB test picture."""
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    return np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)),
                     np.full((height, width), 0.25, np.float32)], axis=2)


def png_header_only(path, width, height):
    """A PNG whose header claims width×height but has no pixel data: decoding it would fail."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


# ----- probe_image / load_image


def test_probe_image_reads_the_header(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(images.to_uint8(ramp_rgb(64, 48))).save(path)
    assert images.probe_image(path, BIG) == (64, 48)


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.jpg", "no such file"),
    (lambda p: p, "not a file"),
    (lambda p: (p / "notes.jpg", (p / "notes.jpg").write_text("hello"))[0],
     "not an image: cannot identify image file"),
])
def test_probe_image_refuses_non_images(tmp_path, make, message):
    with pytest.raises(UserError, match=message) as err:
        images.probe_image(make(tmp_path), BIG)
    assert err.value.file is not None


def test_probe_image_refuses_over_max_pixels_before_decoding(tmp_path):
    path = png_header_only(tmp_path / "huge.png", 9000, 9000)
    with pytest.raises(UserError) as err:
        images.load_image(path, 50_000_000)
    # The header-only file would fail as "truncated" if anything tried to decode it.
    assert err.value.message == ("image is 9000\u00d79000 = 81.0 Mpx, over the limit of 50.0 Mpx "
                                 "(setting max_pixels)")
    assert err.value.file == str(path)


def test_probe_image_small_limit(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(images.to_uint8(ramp_rgb(8, 4))).save(path)
    with pytest.raises(UserError, match="over the limit"):
        images.probe_image(path, max_pixels=10)


def test_decompression_bomb_guard_stays_on(tmp_path):
    path = png_header_only(tmp_path / "bomb.png", 40000, 40000)
    assert Image.MAX_IMAGE_PIXELS is not None
    with pytest.raises(UserError, match="decompression-bomb"):
        images.probe_image(path, max_pixels=2_000_000_000)


def test_load_png_round_trip(tmp_path):
    image = ramp_rgb()
    path = tmp_path / "a.png"
    images.save_image(image, path)
    loaded = images.load_image(path, BIG)
    assert loaded.dtype == np.float32 and loaded.shape == (48, 64, 3)
    assert np.abs(loaded - image).max() <= 0.5 / 255 + 1e-6


def test_load_truncated_jpeg_is_a_user_error(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(images.to_uint8(np.random.default_rng(0).random((96, 128, 3)))).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated or corrupt image"):
        images.load_image(path, BIG)


def test_load_composites_transparency_onto_white(tmp_path):
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 255  # red ...
    rgba[:, :3, 3] = 255  # ... opaque on the left half, fully transparent on the right
    path = tmp_path / "t.png"
    Image.fromarray(rgba, "RGBA").save(path)
    loaded = images.load_image(path, BIG)
    assert np.allclose(loaded[:, :3], [1, 0, 0])
    assert np.allclose(loaded[:, 3:], [1, 1, 1])


@pytest.mark.parametrize("mode", ["L", "P", "1", "CMYK"])
def test_load_converts_other_modes_to_rgb(tmp_path, mode):
    path = tmp_path / ("x.png" if mode != "CMYK" else "x.jpg")
    Image.fromarray(images.to_uint8(ramp_rgb())).convert(mode).save(path)
    loaded = images.load_image(path, BIG)
    assert loaded.shape == (48, 64, 3) and loaded.dtype == np.float32
    assert loaded.min() >= 0.0 and loaded.max() <= 1.0


def test_load_16_bit_greyscale_keeps_precision(tmp_path):
    grey = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(grey).save(path)
    loaded = images.load_image(path, BIG)
    assert np.allclose(loaded[..., 1], grey / 65535.0, atol=1e-6)
    assert len(np.unique(loaded[..., 0])) > 256  # more than 8 bits survived


def test_load_applies_exif_orientation(tmp_path):
    path = tmp_path / "rotated.jpg"
    stored = Image.fromarray(images.to_uint8(ramp_rgb(64, 48)))
    exif = stored.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    stored.save(path, exif=exif)
    assert images.load_image(path, BIG).shape == (64, 48, 3)


# ----- geometry


@pytest.mark.parametrize("size, longest, expected", [
    ((979, 734), 512, (512, 384)),
    ((734, 979), 512, (384, 512)),
    ((100, 100), 37, (37, 37)),
    ((10_000, 1), 100, (100, 1)),  # never a zero side
    ((64, 48), 256, (256, 192)),  # enlarging
])
def test_fit_size_keeps_aspect_ratio(size, longest, expected):
    got = images.fit_size(*size, longest)
    assert got == expected
    assert max(got) == longest


def test_resize_constant_image_stays_constant():
    image = np.full((48, 64, 3), [0.2, 0.5, 0.9], np.float32)
    for size in [(16, 12), (200, 150), (64, 10)]:
        out = images.resize(image, size)
        assert out.shape == (size[1], size[0], 3) and out.dtype == np.float32
        assert np.allclose(out, [0.2, 0.5, 0.9], atol=1e-5)


def test_resize_downscale_antialiases_a_checkerboard():
    # A one-pixel checkerboard is pure Nyquist-frequency detail: a proper low-pass shrink makes it
    # flat grey, while point sampling (the seed's nearest neighbour) keeps black and white pixels.
    board = (np.indices((128, 128)).sum(axis=0) % 2).astype(np.float32)
    image = np.repeat(board[..., None], 3, axis=2)
    out = images.resize(image, (32, 32))
    assert abs(out.mean() - 0.5) < 0.01
    assert out.std() < 0.02
    nearest = image[::4, ::4]
    assert abs(nearest.mean() - 0.5) > 0.4  # what aliasing looks like, for contrast: all black


def test_resize_enlarge_is_smooth_and_clipped():
    image = ramp_rgb(16, 12)
    out = images.resize(image, (64, 48))
    assert out.shape == (48, 64, 3)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.abs(np.diff(out[..., 0], axis=1)).max() < 0.05  # no staircase


def test_to_uint8_rounds_and_clips():
    values = np.array([-0.5, 0.0, 0.6 / 255, 1.49 / 255, 1.0, 2.0], np.float32)
    assert images.to_uint8(values).tolist() == [0, 0, 1, 1, 255, 255]


# ----- writing


@pytest.mark.parametrize("suffix, tolerance", [(".png", 0), (".jpg", 8), (".jpeg", 8)])
def test_save_image_by_suffix(tmp_path, suffix, tolerance):
    image = ramp_rgb()
    path = tmp_path / f"out{suffix}"
    images.save_image(image, path)
    with Image.open(path) as im:
        assert im.format == ("PNG" if suffix == ".png" else "JPEG")
        back = np.asarray(im.convert("RGB")).astype(int)
    assert np.abs(back - images.to_uint8(image)).max() <= tolerance
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_save_image_unknown_suffix(tmp_path):
    with pytest.raises(UserError, match=r"\.png"):
        images.save_image(ramp_rgb(), tmp_path / "out.bmpx")
    assert list(tmp_path.iterdir()) == []


def gif_frames_and_delays(path):
    with Image.open(path) as im:
        frames, delays = [], []
        for index in range(im.n_frames):
            im.seek(index)
            delays.append(im.info["duration"])
            frames.append(np.asarray(im.convert("RGB")).astype(np.float32) / 255)
        return frames, delays, im.info.get("loop")


def distinct_frames(count, width=40, height=30):
    base = ramp_rgb(width, height)
    for index in range(count):
        yield np.roll(base, 3 * index, axis=1)  # a moving picture: no two frames alike


def test_save_gif_from_a_generator(tmp_path):
    path = tmp_path / "p.gif"
    gif.save_gif(distinct_frames(5), path, duration_ms=100, hold_last_ms=400)
    frames, delays, loop = gif_frames_and_delays(path)
    assert len(frames) == 5
    assert delays == [100, 100, 100, 100, 500]
    assert loop == 0
    expected = list(distinct_frames(5))
    for got, want in zip(frames, expected, strict=True):
        assert np.abs(got - want).mean() < 0.03  # adaptive palette + dithering
    assert [p.name for p in tmp_path.iterdir()] == ["p.gif"]


def test_save_gif_keeps_the_frame_rate_despite_centisecond_delays(tmp_path):
    path = tmp_path / "v.gif"
    gif.save_gif(distinct_frames(30), path, duration_ms=1000 / 30)
    _, delays, _ = gif_frames_and_delays(path)
    assert set(delays) <= {30, 40}
    assert sum(delays) == 1000  # 30 frames at 30 fps: one second, not 0.9 s


def test_save_gif_per_frame_durations_and_size_mismatch(tmp_path):
    path = tmp_path / "m.gif"
    frames = list(distinct_frames(3))
    frames[1] = images.resize(frames[1], (80, 60))  # a frame of another size is fitted
    gif.save_gif(iter(frames), path, duration_ms=[50, 200, 120])
    got, delays, _ = gif_frames_and_delays(path)
    assert [f.shape for f in got] == [(30, 40, 3)] * 3
    assert delays == [50, 200, 120]


def test_save_gif_failure_leaves_nothing(tmp_path):
    def broken():
        yield from distinct_frames(2)
        raise RuntimeError("renderer died")
    with pytest.raises(RuntimeError, match="renderer died"):
        gif.save_gif(broken(), tmp_path / "x.gif", duration_ms=100)
    assert list(tmp_path.iterdir()) == []


# ----- colour


def test_preserve_colors_keeps_content_chroma_and_stylized_structure():
    rng = np.random.default_rng(1)
    content = np.clip(0.5 + 0.1 * rng.standard_normal((32, 32, 3)), 0, 1).astype(np.float32)
    content[..., 0] += 0.1  # a reddish photo
    texture = rng.random((32, 32)).astype(np.float32)
    stylized = np.stack([texture * 0.6, texture * 0.2 + 0.4, 1 - texture * 0.5], axis=2)  # bluish

    out = images.preserve_colors(stylized, content)
    yiq = out.astype(np.float64) @ images._RGB_TO_YIQ.T
    content_yiq = content.astype(np.float64) @ images._RGB_TO_YIQ.T
    assert np.abs(yiq[..., 1:] - content_yiq[..., 1:]).max() < 0.02  # content's I and Q
    y_out, y_style, y_content = (images.luminance(a) for a in (out, stylized, content))
    assert np.corrcoef(y_out.ravel(), y_style.ravel())[0, 1] > 0.99  # stylized's structure
    assert abs(y_out.mean() - y_content.mean()) < 0.01  # content's brightness
    assert abs(y_out.std() - y_content.std()) < 0.01


def test_preserve_colors_resizes_content_to_the_stylized_size():
    out = images.preserve_colors(ramp_rgb(64, 48), ramp_rgb(32, 24))
    assert out.shape == (48, 64, 3) and out.dtype == np.float32


def test_match_luminance_matches_mean_and_std():
    rng = np.random.default_rng(2)
    image = (0.2 + 0.1 * rng.random((16, 16, 3))).astype(np.float32)
    reference = (0.3 + 0.4 * rng.random((16, 16, 3))).astype(np.float32)
    out = images.match_luminance(image, reference)
    assert abs(images.luminance(out).mean() - images.luminance(reference).mean()) < 1e-3
    assert abs(images.luminance(out).std() - images.luminance(reference).std()) < 1e-3


def test_match_luminance_flat_image_matches_mean_only():
    out = images.match_luminance(np.full((4, 4, 3), 0.2, np.float32),
                                np.full((4, 4, 3), 0.6, np.float32))
    assert np.allclose(out, 0.6, atol=1e-4)


def test_a_16_bit_png_keeps_the_float_values_and_the_photos_icc_profile(tmp_path):
    """Prints: 16 bits per channel (Pillow writes 16-bit greyscale only), and the photo's
    colour profile carried over to the result."""
    import cv2
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (8, 6), (10, 200, 30)).save(photo, icc_profile=icc)
    assert profiles.result_profile(photo) == icc
    # 105 values 1/10000 apart: 8 bits would round them to two or three levels
    gradient = (0.5 + 1e-4 * np.arange(7 * 5 * 3, dtype=np.float32)).reshape(5, 7, 3)
    images.save_image(gradient, tmp_path / "r.png", bit_depth=16,
                      icc_profile=profiles.result_profile(photo))
    back = cv2.imread(str(tmp_path / "r.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert back.dtype == np.uint16 and back.shape == (5, 7, 3)
    np.testing.assert_allclose(back / 65535.0, gradient, atol=1 / 65535)
    assert len(np.unique(back)) == gradient.size
    assert profiles.result_profile(tmp_path / "r.png") == icc
    images.save_image(gradient, tmp_path / "r8.png", icc_profile=icc)
    assert profiles.result_profile(tmp_path / "r8.png") == icc
    with pytest.raises(UserError, match="PNG only"):
        images.save_image(gradient, tmp_path / "r.jpg", bit_depth=16)


def test_colour_matching_gives_the_target_mean_and_covariance():
    """Gatys et al.'s colour histogram matching: one affine map of the colours; away from the
    [0,1] bounds the result has the target's mean and covariance."""
    rng = np.random.default_rng(3)
    source = np.clip(0.5 + 0.08 * rng.standard_normal((40, 50, 3)) @ [[1, 0.3, 0], [0, 1, 0.2],
                                                                       [0, 0, 1]], 0, 1)
    target = np.clip(0.45 + 0.06 * rng.standard_normal((30, 30, 3)) @ [[1, 0, 0.5], [0.4, 1, 0],
                                                                        [0, 0, 0.7]], 0, 1)
    mean, cov = images.color_stats(target)
    matched = images.match_colors(source, mean, cov)
    got_mean, got_cov = images.color_stats(matched)
    np.testing.assert_allclose(got_mean, mean, atol=2e-3)
    np.testing.assert_allclose(got_cov, cov, atol=2e-4)
    assert matched.dtype == np.float32 and matched.shape == source.shape
    # Weighted statistics: the pixels with weight only.
    weights = np.zeros((40, 50))
    weights[:, :10] = 1.0
    region_mean, _ = images.color_stats(source, weights)
    np.testing.assert_allclose(region_mean, source[:, :10].reshape(-1, 3).mean(axis=0))
    # A mixture of two images' colours is the statistics of their pixels pooled.
    both = np.concatenate([source.reshape(-1, 3), np.repeat(target.reshape(-1, 3), 2, axis=0)])
    mixed_mean, mixed_cov = images.mixed_stats([images.color_stats(source),
                                                images.color_stats(target)], [2000, 1800])
    np.testing.assert_allclose(mixed_mean, both.mean(axis=0), atol=1e-9)
    np.testing.assert_allclose(mixed_cov, np.cov(both.T, bias=True), atol=1e-9)


def test_a_mask_is_its_images_luminance(tmp_path):
    grey = np.zeros((8, 12), np.uint8)
    grey[:, 6:] = 255
    grey[:, 3:6] = 128
    Image.fromarray(grey).save(tmp_path / "m.png")
    mask = images.load_mask(tmp_path / "m.png", 10_000)
    assert mask.shape == (8, 12) and mask.dtype == np.float32
    np.testing.assert_allclose(mask[0], [0] * 3 + [128 / 255] * 3 + [1] * 6, atol=1e-6)
