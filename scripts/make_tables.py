"""Regenerate results/README.md, results/plots/ and README.md's timings from the run records in results/records/.

    python scripts/make_tables.py                        # regenerate (no diff if nothing changed)
    python scripts/make_tables.py --add runs/<run>       # copy a run's record.json files in first (no weights)
"""

import argparse
import logging
import sys
from pathlib import Path

from sbert_repro.errors import UsageError
from sbert_repro.report.pages import make_tables

REPO = Path(__file__).resolve().parent.parent

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--add", type=Path, nargs="*", default=[], help="run folders whose records to add first")
    parser.add_argument("--results-dir", type=Path, default=REPO / "results", help="default: %(default)s")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md",
                        help="README whose timings block to refill (default: %(default)s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    try:
        print(f"wrote {make_tables(args.results_dir, args.add, args.readme)}")
    except UsageError as error:
        print(f"make_tables.py: error: {error}", file=sys.stderr)
        sys.exit(2)
