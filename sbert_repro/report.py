"""Reports: the gain table (task | metric | baseline | fine-tuned | gain | paper) as Markdown.

Numbers are rounded here, when printed, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping

from sbert_repro.paper import CITATION, paper_baseline_to_finetuned
from sbert_repro.tasks import RETRIEVAL_TASKS

STS_METRICS = ("spearman", "pearson")
RETRIEVAL_METRICS_SHOWN = ("ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100", "map@100")


def gain_rows(baseline: Mapping[str, float], finetuned: Mapping[str, float]) -> list[dict[str, object]]:
    """One row per task/metric present in both score sets, in task order, STS before retrieval."""
    rows = []
    for key in baseline:
        if key not in finetuned:
            continue
        task, metric = key.split("/", 1)
        shown = RETRIEVAL_METRICS_SHOWN if task in RETRIEVAL_TASKS else STS_METRICS
        if metric not in shown:
            continue
        rows.append({"task": task, "metric": metric, "baseline": baseline[key], "finetuned": finetuned[key],
                     "gain": finetuned[key] - baseline[key], "paper": paper_baseline_to_finetuned(task, metric)})
    return rows


def gain_table_markdown(rows: list[dict[str, object]], model: str, data: str) -> str:
    """The gain table, labelled with the model and data it came from."""
    lines = [
        f"Model: `{model}`; data: {data}. Scores x100 (STS: cosine vs gold; retrieval: exact FAISS search).",
        f"Paper column: bert-base-uncased, Avg. BERT embeddings -> SBERT-STSb-base ({CITATION}); "
        "n/r = not reported.",
        "",
        "| task | metric | baseline | fine-tuned | gain | paper |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(f"| {row['task']} | {row['metric']} | {row['baseline']:.2f} | {row['finetuned']:.2f} | "
                     f"{round(row['gain'], 2) + 0.0:+.2f} | {row['paper']} |")  # + 0.0: no "-0.00"
    return "\n".join(lines) + "\n"


def scores_table_markdown(scores: Mapping[str, float], model: str, data: str) -> str:
    """Scores of one model (no training): task | metric | score."""
    lines = [f"Model: `{model}`; data: {data}. Scores x100.", "", "| task | metric | score |", "|---|---|---:|"]
    for key, value in scores.items():
        task, metric = key.split("/", 1)
        lines.append(f"| {task} | {metric} | {value:.2f} |")
    return "\n".join(lines) + "\n"
