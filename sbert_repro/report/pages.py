"""make_tables: every page of results/ and its plots, from the committed records; README.md's timings too."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sbert_repro.errors import UsageError
from sbert_repro.report.ann_table import render_ann
from sbert_repro.report.geometry_page import render_geometry
from sbert_repro.report.perf_page import is_full_reproduction, render_perf
from sbert_repro.report.record_groups import add_run, geometry_page_records, load_records
from sbert_repro.report.results_page import README_BLOCK, readme_timings, render_results, update_readme_block
from sbert_repro.runs.folders import fresh_staging, kill_point, removed_on_failure
from sbert_repro.runs.records import ANN_KIND, COST_KIND, PERF_KIND, write_text_atomic


def render_pages(records: list[dict[str, Any]], plots_dir: Path | None) -> dict[str, str]:
    """results/'s pages by file name: README.md always; ann.md and perf.md when their benchmarks have records (perf.md:
    the speed or the cost benchmark's);
    geometry.md when there are geometry runs or post-processed evaluations."""
    pages = {"README.md": render_results(records, plots_dir)}
    benchmarks = [record for record in records if record["kind"] == ANN_KIND]
    if benchmarks:
        pages["ann.md"] = render_ann(benchmarks, plots_dir)
    speed = [record for record in records if record["kind"] == PERF_KIND]
    cost = [record for record in records if record["kind"] == COST_KIND]
    if speed or cost:
        pages["perf.md"] = render_perf(speed, [record for record in records if is_full_reproduction(record)],
                                       plots_dir, cost)
    if geometry_page_records(records):
        pages["geometry.md"] = render_geometry(records, plots_dir)
    return pages


def make_tables(results_dir: Path, add: Sequence[Path] = (), readme: Path | None = None) -> Path:
    """Copy runs in (`add`), then regenerate results_dir/README.md, ann.md, perf.md, geometry.md,
    results_dir/plots/ and, when given, the timings block of the top-level `readme`, all from the records."""
    if readme is not None and not all(marker in readme.read_text(encoding="utf-8") for marker in README_BLOCK):
        raise UsageError(f"{readme}: no '{README_BLOCK[0].strip()}' ... '{README_BLOCK[1].strip()}' block to "
                         "fill; restore the markers")
    records_dir = results_dir / "records"
    for run_dir in add:
        add_run(run_dir, records_dir)
    records = load_records(records_dir) if records_dir.is_dir() else []
    # Plots are drawn into a staging folder (the slow part: an interrupt there leaves results/ as it was), moved
    # in beside the old ones, and only then are the pages written and the plots no page links any more deleted.
    plots = results_dir / "plots"
    staging = fresh_staging(plots, "--results-dir")
    with removed_on_failure(staging):
        pages = render_pages(records, staging)
        kill_point("plots-drawn")
        drawn = sorted(path.name for path in staging.glob("*.png"))
        plots.mkdir(parents=True, exist_ok=True)
        for name in drawn:
            os.replace(staging / name, plots / name)
        staging.rmdir()
    for name, page in pages.items():
        write_text_atomic(results_dir / name, page)
    if readme is not None:
        update_readme_block(readme, readme_timings(records))
    for stale in plots.glob("*.png"):  # none may outlive its run
        if stale.name not in drawn:
            stale.unlink()
    return results_dir / "README.md"
