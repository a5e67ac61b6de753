"""The gain table a run prints and writes (gains.md): task | metric | baseline | fine-tuned | gain | paper."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sbert_repro.report.labels import format_gain, format_score, mean_and_std
from sbert_repro.report.markdown import markdown_table
from sbert_repro.report.paper import CITATION, paper_column
from sbert_repro.report.prose import fill

STS_METRICS = ("spearman", "pearson")
RETRIEVAL_METRICS_SHOWN = ("ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100", "map@100")


@dataclass(frozen=True)
class GainRow:
    """One task's metric before and after fine-tuning (mean and std over seeds), and the paper's where it has one."""

    task: str
    metric: str
    baseline: float
    finetuned: float
    finetuned_std: float | None
    paper: str

    def cells(self) -> tuple[str, str, str, str, str]:
        return (self.task, self.metric, f"{self.baseline:.2f}", format_score(self.finetuned, self.finetuned_std),
                format_gain(self.finetuned - self.baseline))


def gain_rows(baseline: Mapping[str, float], finetuned_per_seed: Sequence[Mapping[str, float]],
              pooling: str = "mean", objective: str = "sts-cosine") -> list[GainRow]:
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
        rows.append(GainRow(task, metric, baseline[key], mean, std, paper_column(task, metric, pooling, objective)))
    return rows


def gain_table_markdown(rows: list[GainRow], model: str, data: str, seeds: Sequence[int]) -> str:
    """The gain table, labelled with the model, data and seeds it came from."""
    seed_list = ", ".join(map(str, seeds))
    over = (fill("gains", "one-seed", seeds=seed_list) if len(seeds) == 1
            else fill("gains", "seeds", count=len(seeds), seeds=seed_list))
    table = markdown_table(("task", "metric", "baseline", "fine-tuned", "gain", "paper, bert-base-uncased"),
                           [(*row.cells(), row.paper) for row in rows], "llrrrl")
    return "\n".join([fill("gains", "gains", model=model, data=data, over=over, citation=CITATION), "", *table]) + "\n"


def scores_table_markdown(scores: Mapping[str, float], model: str, data: str) -> str:
    """Scores of one model (no training): task | metric | score."""
    table = markdown_table(("task", "metric", "score"), [(*key.split("/", 1), f"{value:.2f}")
                                                          for key, value in scores.items()], "llr")
    return "\n".join([fill("gains", "scores", model=model, data=data), "", *table]) + "\n"
