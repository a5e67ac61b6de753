"""results/ann.md: approximate FAISS search against exact search, from benchmarks/ann.py's records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sbert_repro.report.labels import format_gain, knobs, minutes, provenance
from sbert_repro.report.markdown import markdown_table
from sbert_repro.report.plots import save_plot
from sbert_repro.report.prose import fill
from sbert_repro.report.record_groups import run_folders
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.records import TARGET_RECALL, best_at_target_recall


def render_ann(records: list[dict[str, Any]], plots_dir: Path | None) -> str:
    """results/ann.md: each ANN benchmark's speed/recall table and plot, and SciFact exact vs approximate."""
    lines = [fill("ann", "intro"), ""]
    for record in records:
        vectors, clusters = record["vectors"], record["config"]["clusters"]
        drawn = fill("ann", "one-gaussian") if clusters == 1 else fill("ann", "mixture", clusters=clusters)
        lines += [fill("ann", "benchmark", rows=f"{vectors['rows']:,}", dim=vectors["dim"], drawn=drawn,
                       **provenance(record), derived_from=vectors["derived_from"], queries=f"{vectors['queries']:,}",
                       faiss_version=record["environment"]["packages"].get("faiss-cpu"),
                       took=minutes(record["wall_seconds"])), ""]
        best = best_at_target_recall(record["large"])
        if best:
            lines += [fill("ann", "fastest", target=TARGET_RECALL, index=best["index"],
                           knobs=knobs(best["search_parameters"]), queries_per_s=f"{best['queries_per_s']:,.0f}",
                           speedup=f"{best['speedup_over_exact']:.1f}",
                           exact_queries_per_s=f"{best['exact_queries_per_s']:,.0f}"), ""]
        else:
            lines += [fill("ann", "none-fast-enough", target=TARGET_RECALL), ""]
        lines += markdown_table(("index", "search knob", "recall@10", "queries/s", "speed-up", "build", "bytes/vector"),
                                map(speed_row, record["large"]), "llrrrrr")
        name = f"speed-recall-{run_folders([record])[0]}.png"  # what it shows, for which benchmark run
        if plots_dir is not None and plot_speed_recall(record, plots_dir / name):
            lines += ["", f"![queries/s against recall@10](plots/{name})"]
        lines += ["", fill("ann", "scifact", model=model_label(record["config"]["model"])), "",
                  *markdown_table(("index", "search knob", "nDCG@10", "exact nDCG@10", "change", "recall@10",
                                   "queries/s", "exact queries/s"), map(scifact_row, record["scifact"]), "llrrrrrr")]
        lines.append("")
    return "\n".join(lines)


def speed_row(point: dict[str, Any]) -> tuple[str, ...]:
    return (f"`{point['index']}`", knobs(point["search_parameters"]), f"{point['recall@10_vs_exact']:.3f}",
            f"{point['queries_per_s']:,.0f}", f"{point['queries_per_s'] / point['exact_queries_per_s']:.1f}x",
            minutes(point["build_s"]) if point["index"] != "Flat" else "-", f"{point['bytes_per_vector']:,.0f}")


def scifact_row(point: dict[str, Any]) -> tuple[str, ...]:
    return (f"`{point['index']}`", knobs({k: point[k] for k in ("nprobe", "ef_search") if k in point}),
            f"{point['ndcg@10']:.2f}", f"{point['exact_ndcg@10']:.2f}",
            format_gain(point["ndcg@10"] - point["exact_ndcg@10"]), f"{point['recall@10_vs_exact']:.3f}",
            f"{point['queries_per_s']:,.0f}", f"{point['exact_queries_per_s']:,.0f}")


def plot_speed_recall(record: dict[str, Any], path: Path) -> bool:
    """Queries/s against recall@10, one line per index as its knob grows; exact search as a reference line."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for factory in dict.fromkeys(p["index"] for p in record["large"] if p["index"] != "Flat"):
        points = [p for p in record["large"] if p["index"] == factory]
        axes.plot([p["recall@10_vs_exact"] for p in points], [p["queries_per_s"] for p in points], marker="o",
                  label=factory)
    exact = record["large"][0]["exact_queries_per_s"]
    axes.axhline(exact, color="grey", linestyle="--", label="Flat (exact)")
    axes.axvline(TARGET_RECALL, color="grey", linestyle=":", linewidth=1)
    axes.set_yscale("log")
    axes.set_xlabel("recall@10 against exact search")
    axes.set_ylabel("queries/s")
    clusters = record["config"]["clusters"]
    axes.set_title(f"{record['vectors']['rows']:,} x {record['vectors']['dim']}-d vectors "
                   f"({'one Gaussian' if clusters == 1 else f'mixture of {clusters} Gaussians'}), "
                   f"{record['environment']['hardware']['cpu_cores']} CPU cores", fontsize=9)
    axes.legend(fontsize=8)
    return save_plot(figure, path)
