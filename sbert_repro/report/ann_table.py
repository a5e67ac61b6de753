"""results/ann.md: approximate FAISS search against exact search, from benchmarks/ann.py's records."""

from __future__ import annotations

from pathlib import Path

from sbert_repro.report.labels import format_gain, knobs, minutes, provenance
from sbert_repro.report.markdown import code, markdown_table
from sbert_repro.report.plots import save_plot
from sbert_repro.report.prose import fill
from sbert_repro.report.record_groups import run_folders
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.record_parts import AnnPoint
from sbert_repro.runs.records import TARGET_RECALL, best_at_target_recall
from sbert_repro.runs.schema import AnnRecord


def render_ann(records: list[AnnRecord], plots_dir: Path | None) -> str:
    """results/ann.md: each ANN benchmark's speed/recall table and plot, and SciFact exact vs approximate."""
    lines = [fill("ann", "intro"), ""]
    for record in records:
        vectors, clusters = record.vectors, record.config.clusters
        drawn = fill("ann", "one-gaussian") if clusters == 1 else fill("ann", "mixture", clusters=clusters)
        lines += [fill("ann", "benchmark", rows=f"{vectors.rows:,}", dim=vectors.dim, drawn=drawn,
                       **provenance(record), derived_from=vectors.derived_from, queries=f"{vectors.queries:,}",
                       faiss_version=record.environment.version("faiss-cpu"), took=minutes(record.wall_seconds)), ""]
        best = best_at_target_recall(record.large)
        lines += [fill("ann", "none-fast-enough", target=TARGET_RECALL) if best is None else
                  fill("ann", "fastest", target=TARGET_RECALL, index=best.index, knobs=knobs(best.parameters()),
                       queries_per_s=f"{best.queries_per_s:,.0f}", speedup=f"{speedup(best):.1f}",
                       exact_queries_per_s=f"{best.exact_queries_per_s:,.0f}"), ""]
        lines += markdown_table(("index", "search knob", "recall@10", "queries/s", "speed-up", "build", "bytes/vector"),
                                map(speed_row, record.large), "llrrrrr")
        name = f"speed-recall-{run_folders([record])[0]}.png"  # what it shows, for which benchmark run
        if plots_dir is not None and plot_speed_recall(record, plots_dir / name):
            lines += ("", f"![queries/s against recall@10](plots/{name})")
        lines += ("", fill("ann", "scifact", model=model_label(record.config.model)), "",
                  *markdown_table(("index", "search knob", "nDCG@10", "exact nDCG@10", "change", "recall@10",
                                   "queries/s", "exact queries/s"), map(scifact_row, record.scifact), "llrrrrrr"), "")
    return "\n".join(lines)


def speedup(point: AnnPoint) -> float:
    """The point's queries/s over exact search's on the same queries."""
    return point.queries_per_s / point.exact_queries_per_s


def speed_row(point: AnnPoint) -> tuple[str, ...]:
    return (code(point.index), knobs(point.parameters()), f"{point.recall_at_10_vs_exact:.3f}",
            f"{point.queries_per_s:,.0f}", f"{speedup(point):.1f}x",
            minutes(point.build_s) if point.index != "Flat" else "-", f"{point.bytes_per_vector:,.0f}")


def scifact_row(point: AnnPoint) -> tuple[str, ...]:
    return (code(point.index), knobs(point.parameters()), f"{point.ndcg_at_10:.2f}", f"{point.exact_ndcg_at_10:.2f}",
            format_gain(point.ndcg_at_10 - point.exact_ndcg_at_10), f"{point.recall_at_10_vs_exact:.3f}",
            f"{point.queries_per_s:,.0f}", f"{point.exact_queries_per_s:,.0f}")


def plot_speed_recall(record: AnnRecord, path: Path) -> bool:
    """Queries/s against recall@10, one line per index as its knob grows; exact search as a reference line."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for factory in dict.fromkeys(point.index for point in record.large if point.index != "Flat"):
        points = [point for point in record.large if point.index == factory]
        axes.plot([point.recall_at_10_vs_exact for point in points], [point.queries_per_s for point in points],
                  marker="o", label=factory)
    axes.axhline(record.large[0].exact_queries_per_s, color="grey", linestyle="--", label="Flat (exact)")
    axes.axvline(TARGET_RECALL, color="grey", linestyle=":", linewidth=1)
    axes.set_yscale("log")
    axes.set_xlabel("recall@10 against exact search")
    axes.set_ylabel("queries/s")
    clusters = record.config.clusters
    axes.set_title(f"{record.vectors.rows:,} x {record.vectors.dim}-d vectors "
                   f"({'one Gaussian' if clusters == 1 else f'mixture of {clusters} Gaussians'}), "
                   f"{record.environment.hardware.cpu_cores} CPU cores", fontsize=9)
    axes.legend(fontsize=8)
    return save_plot(figure, path)
