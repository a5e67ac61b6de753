"""results/geometry.md: why cosine between raw sentence vectors means little and what a siamese fine-tune changes,
from `sbert-repro geometry`'s records (how each model's vectors lie, with plots) and, through
postprocessing_table.py, the STS scores of post-processed vectors against fine-tuned models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sbert_repro.report.labels import minutes, provenance, short_model
from sbert_repro.report.markdown import code, markdown_table, record_link
from sbert_repro.report.plots import save_plot
from sbert_repro.report.postprocessing_table import postprocessing_section
from sbert_repro.report.prose import fill
from sbert_repro.runs.record_parts import GeometryModel
from sbert_repro.runs.records import GEOMETRY_KIND
from sbert_repro.runs.schema import AnyRecord, GeometryRecord


def render_geometry(records: list[AnyRecord], plots_dir: Path | None) -> str:
    """results/geometry.md for all records (it reads geometry, evaluate and finetune records); plots written to
    `plots_dir` when given."""
    measured = [record for record in records if record.kind == GEOMETRY_KIND]
    lines = [fill("geometry", "intro"), ""]
    if measured:
        lines += [*space_table(measured), "", *(measured_line(record) for record in measured), ""]
        if plots_dir is not None:
            for record in measured:
                lines += [*record_plots(record, plots_dir), ""]
    return "\n".join(lines + postprocessing_section(records, plots_dir))


def space_table(records: list[GeometryRecord]) -> list[str]:
    rows = [(model_cell(entry), str(entry.dimension), fixed(entry.anisotropy.mean_cosine, 3),
             fixed(entry.anisotropy.centered_mean_cosine, 3), fixed(entry.alignment, 3), fixed(entry.uniformity, 2),
             f"{100 * entry.spectrum.top1_share:.1f}%", f"{100 * entry.spectrum.top10_share:.1f}%",
             f"{entry.spectrum.effective_rank:.1f} of {entry.dimension}",
             f"{', '.join(map(str, entry.rogue_dimensions.dimensions))} ({100 * entry.rogue_dimensions.share:.0f}%)",
             fixed(entry.gold_bins.separation, 2), record_link(record))
            for record in records for entry in record.models]
    return [fill("geometry", "space"), "", *markdown_table(
        ("model", "d", "random-pair cosine", "centered", "alignment", "uniformity", "top-1 PC", "top-10 PC",
         "effective rank", "rogue dimensions", "gold-bin separation", "source"), rows, "lrrrrrrrrlrl")]


def fixed(value: float, digits: int) -> str:
    """`value` to `digits` places, never "-0.000" (a centered cosine of -0.0002 is 0 as printed)."""
    return f"{round(value, digits) + 0.0:.{digits}f}"


def model_cell(entry: GeometryModel) -> str:
    """'`org/model` (fine-tuned: run `geometry-sts-cosine`, sts-cosine, seed 1)', or '`org/model` (raw)'."""
    shown = ", ".join(detail for detail in (entry.run and f"run {code(entry.run)}", entry.objective,
                                            entry.seed is not None and f"seed {entry.seed}") if detail)
    return f"{code(short_model(entry.model))} ({entry.role}{': ' + shown if shown else ''})"


def measured_line(record: GeometryRecord) -> str:
    sentences, gold = record.sentences, record.gold_pairs
    return fill("geometry", "measured", path=record.path, **provenance(record), sampled=f"{sentences.sampled:,}",
                distinct=f"{sentences.distinct:,}", source=sentences.source, pairs=f"{record.config.pairs:,}",
                gold_pairs=f"{gold.pairs:,}", gold_task=gold.task, aligned_pairs=f"{gold.aligned_pairs:,}",
                took=minutes(record.wall_seconds))


def record_plots(record: GeometryRecord, plots_dir: Path) -> list[str]:
    """The record's three plots (PLOTS), a curve per model, each named by what it shows and the record's folder, with
    its caption."""
    import matplotlib.pyplot as plt

    lines = [fill("geometry", "plots", path=record.path), ""]
    for shows, (alt, title, draw) in PLOTS.items():
        figure, axes = plt.subplots(figsize=(7, 4))
        draw(axes, record.models)
        axes.set_title(f"{title}: {record.path}", fontsize=9)
        axes.legend(fontsize=7)
        name = f"geometry-{shows}-{record.path.replace('/', '-')}.png"
        save_plot(figure, plots_dir / name)
        lines += [fill("geometry", f"plot-{shows}"), "", f"![{alt}](plots/{name})", ""]
    return lines[:-1]


def legend(entry: GeometryModel) -> str:
    """'all-MiniLM-L6-v2 (raw, run geometry-sts-cosine)', 'geometry-sts-cosine (fine-tuned, seed 42)': each part
    once, where the model's name already says it."""
    name = short_model(entry.model)
    shown = ", ".join(part for part in (entry.role not in name and entry.role,
                                        entry.run and entry.run != name and f"run {entry.run}",
                                        entry.seed is not None and f"seed {entry.seed}") if part)
    return f"{name} ({shown})" if shown else name


def draw_cosines(axes: Any, models: list[GeometryModel]) -> None:
    """Density of random-pair cosines, one step curve per model, from the record's histogram counts."""
    for entry in models:
        edges = np.asarray(entry.histograms.edges, dtype=float)
        counts = np.asarray(entry.histograms.random_pairs, dtype=float)
        if counts.sum():
            axes.stairs(counts / (counts.sum() * np.diff(edges)), edges, label=legend(entry))
    axes.axvline(0, color="grey", linestyle=":", linewidth=1)
    axes.set_xlabel("cosine of a random pair of sentences (-1 to 1)")
    axes.set_ylabel("density (per unit of cosine)")


def draw_gold_bins(axes: Any, models: list[GeometryModel]) -> None:
    """Mean +- std of the gold pairs' cosine in each gold-score bin, a line per model (an empty bin is a gap)."""
    for k, entry in enumerate(models):
        bins = entry.gold_bins.bins
        shift = 0.05 * (k - (len(models) - 1) / 2)  # side by side, so that the error bars do not hide each other
        axes.errorbar(np.arange(len(bins)) + shift, [np.nan if b.mean is None else b.mean for b in bins],
                      yerr=[np.nan if b.std is None else b.std for b in bins], marker="o", capsize=3,
                      label=legend(entry))
    axes.set_xticks(range(len(models[0].gold_bins.bins)), [f"{b.low:g}-{b.high:g}" for b in models[0].gold_bins.bins])
    axes.set_xlabel("gold similarity score (0-5)")
    axes.set_ylabel("cosine of the pair (mean +- std)")


def draw_spectrum(axes: Any, models: list[GeometryModel]) -> None:
    """Covariance eigenvalues normalised to sum to 1 against their rank, log-log, a line per model."""
    for entry in models:
        values = np.clip(np.asarray(entry.eigenvalues, dtype=float), 0.0, None)  # rounding leaves tiny negatives
        shares = values / values.sum()
        kept = shares > 0  # a log axis has no place for 0
        axes.loglog(np.arange(1, len(shares) + 1)[kept], shares[kept], label=legend(entry))
    axes.set_xlabel("principal component (rank, 1 = largest)")
    axes.set_ylabel("share of the total variance")


# What each plot shows (its file name's part): its image's alt text, its title, and what draws it.
PLOTS = {"cosines": ("random-pair cosines", "Random-pair cosines", draw_cosines),
         "bins": ("cosine by gold bin", "Cosine by gold-score bin", draw_gold_bins),
         "spectrum": ("eigenvalue spectrum", "Eigenvalue spectrum", draw_spectrum)}
