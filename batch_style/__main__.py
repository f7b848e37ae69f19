"""`python -m batch_style`, the same as the `batch-style` command."""

import sys

from batch_style.cli import main

sys.exit(main())
