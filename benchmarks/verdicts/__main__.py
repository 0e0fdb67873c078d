"""``python -m benchmarks.verdicts``: run the verdict benchmark (see ``cli``)."""

from __future__ import annotations

import sys

from benchmarks.verdicts.cli import main

if __name__ == "__main__":
    sys.exit(main())
