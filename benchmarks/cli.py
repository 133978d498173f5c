"""`omfa bench ...`: the benchmarks and the reliability harness (run from a source checkout)."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    """`argv[0]` is "bench"; the rest are the benchmark's arguments."""
    from benchmarks.bench import run

    return run(argv[1:])
