"""results/perf.md's cost section: the most similar pair among n sentences by a cross-encoder and by a bi-encoder,
from benchmarks/cost.py's records, beside the paper's section 1 estimate (paper.COST)."""

from __future__ import annotations

from pathlib import Path

from sbert_repro.report import paper
from sbert_repro.report.labels import minutes, provenance
from sbert_repro.report.markdown import markdown_row, markdown_table
from sbert_repro.report.plots import save_plot
from sbert_repro.report.prose import fill
from sbert_repro.report.record_groups import run_folders
from sbert_repro.runs.record_parts import CostModel, CostPoint
from sbert_repro.runs.schema import CostRecord


def duration(seconds: float) -> str:
    """Seconds as the table prints them: s under two minutes, then min, then h."""
    if seconds < 120:
        return f"{seconds:.2f} s"
    return minutes(seconds) if seconds < 7200 else f"{seconds / 3600:.1f} h"


def render_cost(records: list[CostRecord], plots_dir: Path | None) -> list[str]:
    """The section's lines: the paper's estimate, then per record and model the measured rows and the extrapolated
    one, and a log-log plot of time against n."""
    cross, bi = paper.COST
    lines = [fill("perf", "cost", sentences=f"{paper.COST_SENTENCES:,}", hardware=paper.COST_HARDWARE,
                  cross_quote=cross.quote, bi_quote=bi.quote, citation=paper.COST_CITATION,
                  paper_ratio=f"{cross.seconds / bi.seconds:,.0f}"), ""]
    for record in records:
        lines += [fill("perf", "cost-run", **provenance(record), threads=record.torch_threads), "",
                  *markdown_table(("model", "cross-encoder", "n", "cross-encoder time", "bi-encoder + FAISS time",
                                   "ratio", "same pair?"), (), "llrrrrl"),
                  *(row for model in record.models for row in cost_rows(model, cross_encoder_label(record, model))),
                  markdown_row((f"paper, BERT on {paper.COST_HARDWARE}", None, f"{paper.COST_SENTENCES:,}", "~65 h",
                                "~5 s", f"{cross.seconds / bi.seconds:,.0f}x", None))]
        name = f"cost-{run_folders([record])[0]}.png"
        if plots_dir is not None and plot_cost(record, plots_dir / name):
            lines += ("", f"![time against n](plots/{name})")
        lines.append("")
    return lines


def cross_encoder_label(record: CostRecord, model: CostModel) -> str:
    """A trained cross-encoder by the path the run was given (a run folder, e.g. runs/<run>/seed-44/model: its last
    two parts alone do not say which run), else the record's label."""
    given = record.config.cross_encoder
    return given if given and model.agreement_meaningful else model.cross_encoder


def cost_rows(model: CostModel, cross_encoder: str) -> list[str]:
    """One row per measured n, then the extrapolated one (in italics, marked)."""
    rows = []
    for point in model.points:
        agree = ("yes" if point.agree else disagreement(point)) if model.agreement_meaningful else \
            f"{'yes' if point.agree else 'no'} (random head: not meaningful)"
        rows.append((model.model, cross_encoder, f"{point.n:,}", duration(point.cross_encoder.seconds),
                     duration(point.bi_encoder.seconds), f"{point.ratio:,.0f}x", agree))
    guess = model.extrapolation
    rows.append((model.model, cross_encoder, f"*{guess.n:,} (extrapolated from {guess.from_n:,})*",
                 f"*{duration(guess.cross_encoder_seconds)}*", f"*{duration(guess.bi_encoder_seconds)}*",
                 f"*{guess.ratio:,.0f}x*", None))
    return [markdown_row(cells) for cells in rows]


def disagreement(point: CostPoint) -> str:
    """Which pair each route found (positions in the run's seeded sample) and its score: two different models may
    rank a near-tie differently."""
    cross, bi = point.cross_encoder, point.bi_encoder
    return (f"no: cross-encoder ({cross.pair[0]}, {cross.pair[1]}) at {cross.score:.3f}, bi-encoder "
            f"({bi.pair[0]}, {bi.pair[1]}) at cosine {bi.score:.3f}")


def plot_cost(record: CostRecord, path: Path) -> bool:
    """Seconds against n, log-log: each model's two routes measured (solid, dots) and extrapolated (dashed), and the
    paper's two estimates at 10,000 (stars)."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.8))
    for model in record.models:
        sizes, guess = [point.n for point in model.points], model.extrapolation
        for route, seconds, guessed in (
                ("cross-encoder", [point.cross_encoder.seconds for point in model.points], guess.cross_encoder_seconds),
                ("bi-encoder + FAISS", [point.bi_encoder.seconds for point in model.points], guess.bi_encoder_seconds)):
            line, = axes.loglog(sizes, seconds, marker="o", label=f"{model.model}: {route}")
            axes.plot([sizes[-1], guess.n], [seconds[-1], guessed], linestyle="--", color=line.get_color())
    for estimate in paper.COST:
        axes.plot([paper.COST_SENTENCES], [estimate.seconds], marker="*", markersize=12, linestyle="",
                  label=f"paper ({paper.COST_HARDWARE}): {estimate.route}")
    axes.set_xlabel("sentences n")
    axes.set_ylabel("seconds to find the most similar pair")
    axes.set_title("measured (solid) and extrapolated (dashed)", fontsize=9)
    axes.legend(fontsize=7)
    return save_plot(figure, path)
