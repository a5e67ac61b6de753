"""`python scripts/make_tables.py`: results/'s pages and plots, and README.md's headline, from the committed records.

Whatever stops it ends in one line on stderr: a bad record, a missing README, a results folder without records or in
use by another make_tables (exit status 2, nothing written); a file that cannot be written (exit 2); a Ctrl-C (exit
130). Each page and plot is replaced whole, so the last complete ones stay in place.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from sbert_repro.cli.failures import exit_status
from sbert_repro.report.pages import make_tables
from sbert_repro.runs.progress import for_terminal

PROG = "make_tables.py"


def build_tables_parser(repo: Path, description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--add", type=Path, nargs="*", default=[], help="run folders whose records to add first")
    parser.add_argument("--results-dir", type=Path, default=repo / "results", help="default: %(default)s")
    parser.add_argument("--readme", type=Path, default=None,
                        help="README whose headline block to refill (default: the repository's README.md, and only "
                             "when --results-dir is the repository's results/)")
    return parser


def make_tables_script(argv: list[str] | None, repo: Path, description: str | None = None) -> int:
    """Parse `argv` (None: sys.argv), regenerate the pages, and return the exit status."""
    args = build_tables_parser(repo, description).parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    def regenerate() -> None:
        # Another results folder's records never rewrite the repository's headline unless --readme says so.
        readme = args.readme if args.readme is not None else \
            repo / "README.md" if args.results_dir.resolve() == (repo / "results").resolve() else None
        written = make_tables(args.results_dir, args.add, readme)
        plots = [path for path in written if path.suffix == ".png"]
        named = [for_terminal(str(path)) for path in written if path.suffix != ".png"]
        print(f"wrote {', '.join(named)}" + (f", and {len(plots)} plots in {for_terminal(str(plots[0].parent))}"
                                            if plots else ""))

    # Every OSError here is a write: a plot or a copy that cannot be written (matplotlib and shutil raise it as is).
    return exit_status(PROG, regenerate, remedy=lambda: "run make_tables again", every_os_error=True,
                       interrupted=lambda: f"interrupted; the pages and plots in {args.results_dir} are the last "
                                           "complete ones")
