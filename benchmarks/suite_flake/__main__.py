"""``python -m benchmarks.suite_flake``: run the suite-flake benchmark (see ``cli``)."""

from __future__ import annotations

import sys

from benchmarks.suite_flake.cli import main

if __name__ == "__main__":
    sys.exit(main())
