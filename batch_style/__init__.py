"""batch_style: batch neural style transfer (Gatys, Ecker and Bethge) from YAML manifests.

    >>> import batch_style
    >>> picture = batch_style.stylize("photo.jpg", "painting.jpg", size=256, steps=100)

`stylize` returns a PIL image, `paint` the picture with how it was made, `run` runs a manifest
(a file or a mapping), `Settings` holds every setting with its default (README: Settings).
"""

__version__ = "0.1.0"
__all__ = ["Painting", "Settings", "paint", "run", "stylize"]


def __getattr__(name: str):
    # Loaded on first use: `import batch_style` (and so every command's start) stays light.
    if name in ("Painting", "paint", "run", "stylize"):
        from batch_style import library

        return getattr(library, name)
    if name == "Settings":
        from batch_style.settings import Settings

        return Settings
    raise AttributeError(f"module 'batch_style' has no attribute {name!r}")
