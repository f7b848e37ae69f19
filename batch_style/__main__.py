"""`python -m batch_style`, the same as the `batch-style` command."""

from batch_style.cli import entry

entry()
