"""`python -m hitcount` and the `hitcount` console script: both run the CLI."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
