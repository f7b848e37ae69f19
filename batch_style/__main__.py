"""`python -m batch_style`, the same as the `batch-style` command."""

from batch_style import interrupts

interrupts.install()  # before the imports below: a Ctrl-C during them ends as "interrupted" too
try:
    from batch_style.cli import entry
except KeyboardInterrupt:
    interrupts.exit_interrupted()

entry()
