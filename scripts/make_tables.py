"""Regenerate results/README.md, results/plots/ and README.md's headline from the run records in results/records/.

    python scripts/make_tables.py                        # regenerate (no diff if nothing changed)
    python scripts/make_tables.py --add runs/<run>       # copy a run's records in first (no weights)
"""

import sys
from pathlib import Path

from sbert_repro.cli.tables import make_tables_script

if __name__ == "__main__":
    sys.exit(make_tables_script(None, Path(__file__).resolve().parent.parent, __doc__))
