"""`python -m syncs.sample_data --customers N --seed S --as-of YYYY-MM-DD --warehouse PATH`."""

from __future__ import annotations

import argparse
import time
from datetime import date
from pathlib import Path

from syncs.sample_data import generate
from syncs.settings import warehouse_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The generator's options, shared with `tidings generate` (which has its own global --warehouse)."""
    parser.add_argument("--customers", type=int, default=1000, help="number of CRM contacts (default 1000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--as-of", type=date.fromisoformat, default=None, help="anchor date (default TIDINGS_AS_OF_DATE, else today)"
    )


def run(args: argparse.Namespace) -> None:
    warehouse = (args.warehouse or warehouse_path()).resolve()
    started = time.perf_counter()
    counts = generate(warehouse, customers=args.customers, seed=args.seed, as_of=args.as_of)
    elapsed = time.perf_counter() - started
    width = max(map(len, counts))
    for table, rows in counts.items():
        print(f"raw.{table:<{width}} {rows:>12,}")
    print(f"wrote {warehouse} in {elapsed:.1f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m syncs.sample_data", description=__doc__)
    add_arguments(parser)
    parser.add_argument("--warehouse", type=Path, default=None, help="DuckDB file (default TIDINGS_WAREHOUSE)")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
