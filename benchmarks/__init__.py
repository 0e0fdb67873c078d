"""Benchmarks of pytest-hwopt itself, run from the repository root as modules.

``python -m benchmarks.verdicts --help``: how often a speedup budget gets the
right verdict under noise, and how long a verdict takes (see
``benchmarks/README.md``).

``python -m benchmarks.suite_flake --help``: how many checks of the shipped
suites change status between runs, quiet and under noise.
"""
