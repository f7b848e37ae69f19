"""Makes the sample masks in this folder (run from the repository root: python samples/masks/make_masks.py)."""

from pathlib import Path

import numpy as np
from PIL import Image

FOLDER = Path(__file__).parent
W, H = 400, 300  # 4:3, the shape of the sample photos and the sample clip
SOFT = 0.12      # the width of a soft seam, as a share of the side it crosses


def ramp(n: int, centre: float, soft: float) -> np.ndarray:
    """0 before centre − soft/2, 1 after centre + soft/2, linear between (n samples in [0, 1])."""
    t = (np.arange(n) + 0.5) / n
    return np.clip((t - centre) / soft + 0.5, 0.0, 1.0)


def save(mask: np.ndarray, name: str) -> None:
    Image.fromarray(np.rint(mask * 255).astype(np.uint8), "L").save(FOLDER / name)


def main() -> None:
    right = np.tile(ramp(W, 0.5, SOFT), (H, 1))
    save(1.0 - right, "left.png")
    save(right, "right.png")
    below = np.tile(ramp(H, 0.42, SOFT)[:, None], (1, W))  # the horizon of tubingen.jpg
    save(1.0 - below, "sky.png")
    save(below, "town.png")
    yy, xx = np.mgrid[0:H, 0:W]
    r = np.hypot((xx - 0.5 * W) / (0.22 * W), (yy - 0.55 * H) / (0.25 * H))
    save(np.clip((1.15 - r) / 0.3, 0.0, 1.0), "centre.png")
    # A mask video for samples/clips/realshort.mp4 (36 frames): a soft edge sweeping from left
    # to right, the style on its right, so the styled part shrinks as the clip plays.
    from batch_style.media import encode

    frames = 36
    w, h = 160, 120
    band = [np.repeat(np.tile(ramp(w, 0.2 + 0.6 * i / (frames - 1), 0.25), (h, 1))[..., None], 3, 2)
            for i in range(frames)]
    encode.write_mp4((f.astype(np.float32) for f in band), FOLDER / "sweep.mp4", 30)


if __name__ == "__main__":
    main()
