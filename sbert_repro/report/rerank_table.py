"""results/README.md's "Retrieve, then re-rank" section: a cross-encoder re-scoring the top K of a bi-encoder's exact
FAISS search, from `finetune --objective cross-encoder-retrieval` runs (the raw model's search, re-ranked by the
re-ranker each seed trained) and `evaluate --rerank` runs (any bi-encoder's search, any cross-encoder). nDCG@10 of
the search alone and after re-ranking, and the time re-ranking adds per query (the paper's accuracy-for-time
trade, Reimers & Gurevych 2019, section 1)."""

from __future__ import annotations

from sbert_repro.config.objectives import ended_at_no_learning, get_objective, reranker_no_learning_loss
from sbert_repro.report.labels import format_gain, format_score, machine_label, mean_and_std
from sbert_repro.report.markdown import markdown_table
from sbert_repro.report.prose import fill
from sbert_repro.report.record_groups import retrieval_training, seed_values, sources
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.schema import AnyRecord, EvaluateRecord, FinetuneRecord

Group = list[FinetuneRecord]
METRIC = "ndcg@10"


def reranks(group: Group) -> bool:
    """A re-ranker's fine-tune: what it scored is the raw model's search, re-ranked by it."""
    return get_objective(group[0].config.objective).scoring == "reranked-search"


def trained_rows(groups: list[Group]) -> list[list[str]]:
    """One row per re-ranker setup and task: the raw model's search before, re-ranked (mean +- std over seeds)."""
    rows = []
    for group in filter(reranks, groups):
        config, baseline = group[0].config, group[0].baseline.scores
        reranker = (f"trained here from `{model_label(config.model)}`: {retrieval_training(config)}, "
                    f"{config.epochs} epoch(s)")
        for task in [key.split("/")[0] for key in baseline if key.endswith(f"/{METRIC}")]:
            after = seed_values(group, "finetuned", f"{task}/{METRIC}")
            times = [record.finetuned.speeds.get(f"{task}/rerank_ms_per_query") for record in group]
            if after is not None and None not in times:
                rows.append(rerank_row(model_label(config.model), reranker, task, config.rerank_top_k,
                                       baseline[f"{task}/{METRIC}"], after, times, group[0], sources(group),
                                       training_loss(group)))
    return rows


def evaluate_rows(records: list[AnyRecord]) -> list[list[str]]:
    """One row per `evaluate --rerank` run and task."""
    rows = []
    for record in records:
        if not isinstance(record, EvaluateRecord) or not record.config.rerank:
            continue
        config, scores = record.config, record.scores
        for task in [key.split("/")[0] for key in scores if key.endswith(f"/rerank_{METRIC}")]:
            rows.append(rerank_row(model_label(config.model), f"`{model_label(config.rerank)}`", task,
                                   config.rerank_top_k, scores[f"{task}/{METRIC}"], [scores[f"{task}/rerank_{METRIC}"]],
                                   [record.speeds[f"{task}/rerank_ms_per_query"]], record,
                                   f"[records](records/{record.path}/)"))
    return rows


def no_learning(group: Group) -> float:
    """The training loss of a re-ranker of this setup that learned nothing (objectives.reranker_no_learning_loss)."""
    return reranker_no_learning_loss(group[0].training.pos_weight, group[0].config.hard_negatives)


def training_loss(group: Group) -> str:
    """The re-ranker's training loss, first and last logged (means over seeds), beside what one that learned nothing
    scores."""
    if not all(record.training.loss_history for record in group):
        return "-"
    first, last = (mean_and_std([record.training.loss_history[at].loss for record in group])[0] for at in (0, -1))
    return f"{first:.2f} -> {last:.2f} (no learning: {no_learning(group):.2f})"


def rerank_row(first_stage: str, reranker: str, task: str, top_k: int, before: float, after: list[float],
               ms_per_query: list[float], record: AnyRecord, source: str, loss: str = "-") -> list[str]:
    """A row's cells: nDCG@10 of the search alone and re-ranked (mean +- std over `after`, one value per seed), the
    change and whether it rose, the milliseconds re-ranking added per query, and the re-ranker's training loss where
    it was trained in the same run."""
    mean, std = mean_and_std(after)
    verdict = "raised" if round(mean - before, 2) > 0 else "not raised"
    return [f"`{first_stage}`", reranker, task, str(top_k), f"{before:.2f}", format_score(mean, std),
            f"{format_gain(mean - before)} ({verdict})", f"{mean_and_std(ms_per_query)[0]:,.0f}", str(len(after)),
            loss, machine_label(record.environment.hardware), source]


def learned_nothing(groups: list[Group]) -> list[Group]:
    """The re-ranker runs whose every seed's training loss ended at the no-learning value."""
    return [group for group in filter(reranks, groups) if training_loss(group) != "-"
            and all(ended_at_no_learning([point.loss for point in record.training.loss_history], no_learning(group))[0]
                   for record in group)]


def rerank_section(groups: list[Group], records: list[AnyRecord]) -> list[str]:
    """The section, or nothing when no record re-ranked a search; it opens by naming the re-rankers that did not
    learn, so that a reader meets the reason before their rows."""
    rows = trained_rows(groups) + evaluate_rows(records)
    if not rows:
        return []
    failed = learned_nothing(groups)
    verdict = [fill("results", "rerank-failed", runs=", ".join(sources(group) for group in failed),
                    start=", ".join(sorted({f"`{model_label(group[0].config.model)}`" for group in failed}))),
               ""] if failed else []
    return [fill("results", "rerank"), "", *verdict, *markdown_table(
        ("first stage (bi-encoder)", "re-ranker", "task", "top K re-ranked", "nDCG@10 search alone", "re-ranked",
         "change", "ms per query added", "seeds", "re-ranker's train loss, first -> last", "device", "source"),
        rows, "lllrrrrrrlll"), ""]
