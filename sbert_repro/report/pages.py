"""make_tables: every page of results/ and its plots, from the committed records; README.md's headline too."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from sbert_repro.errors import UsageError
from sbert_repro.report.ann_table import render_ann
from sbert_repro.report.geometry_page import render_geometry
from sbert_repro.report.perf_page import is_full_reproduction, render_perf
from sbert_repro.report.record_groups import geometry_page_records
from sbert_repro.report.results_page import (
    README_BLOCK,
    readme_headline,
    render_results,
    render_runs,
    update_readme_block,
)
from sbert_repro.report.scale_page import render_scale
from sbert_repro.runs.committed import RunToAdd, copy_run, load_records, read_run
from sbert_repro.runs.folders import fresh_staging, kill_point, locked, removed_on_failure
from sbert_repro.runs.records import ANN_KIND, COST_KIND, PERF_KIND, RECORD, SCALE_KIND, write_text_atomic
from sbert_repro.runs.schema import AnyRecord


def render_pages(records: list[AnyRecord], plots_dir: Path | None) -> dict[str, str]:
    """results/'s pages by file name: README.md always; ann.md, perf.md and scale.md when their benchmarks have records
    (perf.md: the speed or the cost benchmark's);
    geometry.md when there are geometry runs or post-processed evaluations."""
    pages = {"README.md": render_results(records, plots_dir), "runs.md": render_runs(records, plots_dir)}
    benchmarks = [record for record in records if record.kind == ANN_KIND]
    if benchmarks:
        pages["ann.md"] = render_ann(benchmarks, plots_dir)
    scale = [record for record in records if record.kind == SCALE_KIND]
    if scale:
        pages["scale.md"] = render_scale(scale, plots_dir)
    speed = [record for record in records if record.kind == PERF_KIND]
    cost = [record for record in records if record.kind == COST_KIND]
    if speed or cost:
        pages["perf.md"] = render_perf(speed, [record for record in records if is_full_reproduction(record)],
                                       plots_dir, cost)
    if geometry_page_records(records):
        pages["geometry.md"] = render_geometry(records, plots_dir)
    return pages


def make_tables(results_dir: Path, add: Sequence[Path] = (), readme: Path | None = None) -> list[Path]:
    """Copy runs in (`add`), then regenerate results_dir/README.md, ann.md, perf.md, geometry.md,
    results_dir/plots/ and, when given, the headline block of the top-level `readme`, all from the records; returns
    every page, plot and README written, and each run folder copied in.

    Everything is read and checked, and every page rendered, before anything is written: a bad record, a missing
    README or a results folder without records changes nothing. One make_tables at a time holds the results
    folder's lock (a second stops in one line naming the first one's pid)."""
    _check_readme(readme)
    records_dir = results_dir / "records"
    if not add and not (records_dir.is_dir() and any(records_dir.rglob(RECORD))):
        raise UsageError(f"--results-dir {results_dir}: no records in {records_dir}; give the results folder that "
                         "holds records/ (by default the repository's results/), or --add a run to it")
    with locked(results_dir, "--results-dir"):
        runs = [read_run(run_dir, records_dir) for run_dir in add]
        records = sorted([*(load_records(records_dir) if records_dir.is_dir() else []),
                          *(record for run in runs for record in run.records)],
                         key=lambda record: PurePosixPath(record.path, RECORD).parts)
        if not records:
            raise UsageError(f"--results-dir {results_dir}: no finished record in {records_dir}; finish a run "
                             "and --add it")
        return _write_pages(results_dir, records, runs, readme)


def _check_readme(readme: Path | None) -> None:
    if readme is None:
        return
    try:
        text = readme.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--readme {readme}: cannot read it ({getattr(error, 'strerror', None) or error}); give "
                         "the README.md whose headline block to refill") from None
    if not all(marker in text for marker in README_BLOCK):
        raise UsageError(f"{readme}: no '{README_BLOCK[0].strip()}' ... '{README_BLOCK[1].strip()}' block to "
                         "fill; restore the markers")


def _write_pages(results_dir: Path, records: list[AnyRecord], runs: list[RunToAdd], readme: Path | None
                 ) -> list[Path]:
    # Plots are drawn into a staging folder (the slow part: an interrupt there leaves results/ as it was), the runs
    # copied in, the plots moved in beside the old ones, and only then are the pages written and the plots no page
    # links any more deleted.
    plots = results_dir / "plots"
    staging = fresh_staging(plots, "--results-dir")
    with removed_on_failure(staging):
        pages = render_pages(records, staging)  # every record fits its schema: what the pages read is there
        kill_point("plots-drawn")
        for run in runs:
            copy_run(run, results_dir / "records")
        kill_point("records-added")
        drawn = sorted(path.name for path in staging.glob("*.png"))
        plots.mkdir(parents=True, exist_ok=True)
        for name in drawn:
            os.replace(staging / name, plots / name)
        staging.rmdir()
    for name, page in pages.items():
        write_text_atomic(results_dir / name, page)
    if readme is not None:
        update_readme_block(readme, readme_headline(records))
    for stale in plots.glob("*.png"):  # none may outlive its run
        if stale.name not in drawn:
            stale.unlink()
    return [*(results_dir / name for name in pages), *(plots / name for name in drawn),
            *([readme] if readme is not None else []), *(run.target for run in runs)]
