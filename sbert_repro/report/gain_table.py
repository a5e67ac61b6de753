"""The gain table a run prints and writes (gains.md): task | metric | baseline | fine-tuned | gain | paper."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sbert_repro.report.labels import format_gain, format_score, mean_and_std
from sbert_repro.report.markdown import code, markdown_table, text
from sbert_repro.report.paper import CITATION, paper_column
from sbert_repro.report.prose import fill

STS_METRICS = ("spearman", "pearson")
RETRIEVAL_METRICS_SHOWN = ("ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100", "map@100")


def gain_cells(before: float, after: Sequence[float]) -> tuple[str, str, str]:
    """('70.00', '82.00 +- 2.00', '+12.00'): a score before training, its mean +- std over the seeds after, the gain."""
    mean, std = mean_and_std(after)
    return f"{before:.2f}", format_score(mean, std), format_gain(mean - before)


@dataclass(frozen=True)
class GainRow:
    """One task's metric before fine-tuning and after it (a score per seed), and the paper's ('' where none)."""

    task: str
    metric: str
    baseline: float
    finetuned: tuple[float, ...]
    paper: str

    def cells(self) -> tuple[str, ...]:
        return text(self.task), self.metric, *gain_cells(self.baseline, self.finetuned)


def gain_rows(baseline: Mapping[str, float], finetuned_per_seed: Sequence[Mapping[str, float]],
              pooling: str = "mean", objective: str = "sts-cosine") -> list[GainRow]:
    """One row per task/metric every seed scored before and after, STS before retrieval."""
    rows = []
    for key in baseline:
        task, metric = key.split("/", 1)
        after = tuple(finetuned.get(key) for finetuned in finetuned_per_seed)
        if None not in after and metric in STS_METRICS + RETRIEVAL_METRICS_SHOWN:  # not the approximate index's
            rows.append(GainRow(task, metric, baseline[key], after, paper_column(task, metric, pooling, objective)))
    return rows


def gain_table_markdown(rows: list[GainRow], model: str, data: str, seeds: Sequence[int]) -> str:
    """The gain table, labelled with the model, data and seeds it came from."""
    seed_list = ", ".join(map(str, seeds))
    over = (fill("gains", "one-seed", seeds=seed_list) if len(seeds) == 1
            else fill("gains", "seeds", count=len(seeds), seeds=seed_list))
    table = markdown_table(("task", "metric", "baseline", "fine-tuned", "gain", "paper, bert-base-uncased"),
                           [(*row.cells(), row.paper) for row in rows], "llrrrl")
    return "\n".join([fill("gains", "gains", model=code(model), data=text(data), over=over, citation=CITATION), "",
                      *table]) + "\n"


def scores_table_markdown(scores: Mapping[str, float], model: str, data: str) -> str:
    """Scores of one model (no training): task | metric | score."""
    rows = [(text(task), metric, f"{value:.2f}") for task, metric, value in
            ((*key.split("/", 1), value) for key, value in scores.items())]
    table = markdown_table(("task", "metric", "score"), rows, "llr")
    return "\n".join([fill("gains", "scores", model=code(model), data=text(data)), "", *table]) + "\n"
