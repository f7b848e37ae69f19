"""batch_style: batch neural style transfer (Gatys, Ecker and Bethge) from YAML manifests."""

__version__ = "0.1.0"
