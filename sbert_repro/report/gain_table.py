"""The gain table a run prints and writes (gains.md): task | metric | baseline | fine-tuned | gain | paper."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sbert_repro.report.labels import format_gain, format_score, mean_and_std
from sbert_repro.report.paper import CITATION, paper_column

STS_METRICS = ("spearman", "pearson")
RETRIEVAL_METRICS_SHOWN = ("ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100", "map@100")


def gain_rows(baseline: Mapping[str, float], finetuned_per_seed: Sequence[Mapping[str, float]],
              pooling: str = "mean", objective: str = "sts-cosine") -> list[dict[str, object]]:
    """One row per task/metric scored before and after, STS before retrieval; fine-tuned as mean (+- std)
    over seeds."""
    rows = []
    for key in baseline:
        if not all(key in finetuned for finetuned in finetuned_per_seed):
            continue
        task, metric = key.split("/", 1)
        if metric not in STS_METRICS + RETRIEVAL_METRICS_SHOWN:  # (not the approximate index's columns)
            continue
        mean, std = mean_and_std([finetuned[key] for finetuned in finetuned_per_seed])
        rows.append({"task": task, "metric": metric, "baseline": baseline[key], "finetuned": mean,
                     "finetuned_std": std, "gain": mean - baseline[key],
                     "paper": paper_column(task, metric, pooling, objective)})
    return rows


def gain_table_markdown(rows: list[dict[str, Any]], model: str, data: str, seeds: Sequence[int]) -> str:
    """The gain table, labelled with the model, data and seeds it came from."""
    seed_list = ", ".join(map(str, seeds))
    over = f"seed {seed_list}" if len(seeds) == 1 else f"mean +- std over {len(seeds)} seeds ({seed_list})"
    lines = [
        f"Model: `{model}`; data: {data}; fine-tuned: {over}. Scores x100 (STS: cosine vs gold; retrieval: exact "
        "FAISS search).",
        f"Last column: the paper's bert-base-uncased Spearman for this pooling and objective, before -> after "
        f"training ({CITATION}), not this model's; n/r = not reported.",
        "",
        "| task | metric | baseline | fine-tuned | gain | paper, bert-base-uncased |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(f"| {row['task']} | {row['metric']} | {row['baseline']:.2f} | "
                     f"{format_score(row['finetuned'], row['finetuned_std'])} | {format_gain(row['gain'])} | "
                     f"{row['paper']} |")
    return "\n".join(lines) + "\n"


def scores_table_markdown(scores: Mapping[str, float], model: str, data: str) -> str:
    """Scores of one model (no training): task | metric | score."""
    lines = [f"Model: `{model}`; data: {data}. Scores x100.", "", "| task | metric | score |", "|---|---|---:|"]
    for key, value in scores.items():
        task, metric = key.split("/", 1)
        lines.append(f"| {task} | {metric} | {value:.2f} |")
    return "\n".join(lines) + "\n"
