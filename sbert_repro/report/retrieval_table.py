"""results/README.md's retrieval sections: every fine-tune's search before and after; the runs trained for retrieval
beside BM25 (ours and BEIR's), with a plot and their approximate index; and "Retrieve, then re-rank", a cross-encoder
re-scoring a bi-encoder's top K (a re-ranker's fine-tune, or `evaluate --rerank`), with the time that adds per query
(the paper's accuracy-for-time trade, section 1)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote

from sbert_repro.config.objectives import ended_at_no_learning, get_objective, reranker_no_learning_loss
from sbert_repro.report.gain_table import gain_cells
from sbert_repro.report.labels import format_score, machine_label, mean_and_std
from sbert_repro.report.markdown import (
    SCORE_LABELS,
    STS_AVG,
    STSB,
    STSB_SEARCH,
    code,
    markdown_table,
    record_link,
    text,
)
from sbert_repro.report.paper import BEIR_BM25
from sbert_repro.report.plots import save_plot
from sbert_repro.report.prose import fill
from sbert_repro.report.record_groups import describe, retrieval_training, seed_stat, seed_values, sources
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.schema import AnyRecord, BM25Record, EvaluateRecord, FinetuneRecord

Group = list[FinetuneRecord]
# The columns beside the trained task's own: another retrieval task, and the STS tasks, before -> after.
SIDE_EFFECTS = (STSB_SEARCH, STSB, STS_AVG)
NDCG = "ndcg@10"


def tasks_with(keys: Iterable[str], metric: str) -> list[str]:
    """The tasks of the score keys ("task/metric") that hold `metric` (registry tasks and folders, by the names their
    scores go by), in the keys' order."""
    return [key.split("/")[0] for key in keys if key.endswith(f"/{metric}")]


def reranks(group: Group) -> bool:
    """A re-ranker's fine-tune: what it scored is the raw model's search, re-ranked by it."""
    return get_objective(group[0].config.objective).scoring == "reranked-search"


def before_and_after(groups: list[Group]) -> list[str]:
    """Every fine-tune's nDCG@10 and Recall@10 on each retrieval task every seed scored, before and after."""
    rows = []
    for group in (group for group in groups if not reranks(group)):  # its own section says what a re-ranker's are
        base = group[0].baseline.scores
        rows += [(describe(group), task, *gain_cells(base[f"{task}/{NDCG}"], values),
                  f"{base[f'{task}/recall@10']:.2f}", seed_stat(group, "finetuned", f"{task}/recall@10"))
                 for task in tasks_with(base, NDCG) if (values := seed_values(group, "finetuned", f"{task}/{NDCG}"))]
    return [fill("results", "retrieval"), "", *markdown_table(
        ("setup", "task", "nDCG@10 before", "nDCG@10 after", "gain", "Recall@10 before", "Recall@10 after"), rows,
        "llrrrrr")]


def trained_for_search(record: FinetuneRecord) -> bool:
    """A bi-encoder fine-tuned on a retrieval task's judgements (a re-ranker trains on them too, as a cross-encoder)."""
    objective = get_objective(record.config.objective)
    return objective.train_data == "retrieval-judgements" and not objective.cross_encoder


def trained_task(group: Group) -> str:
    """The task a group trained on, by the name its scores go by (a BEIR folder's: its last part)."""
    return text(Path(group[0].config.train_task).name)


def trained_ndcg(group: Group) -> list[float] | None:
    return seed_values(group, "finetuned", f"{trained_task(group)}/{NDCG}")


def retrieval_groups(groups: list[Group]) -> list[Group]:
    """The fine-tune groups trained for retrieval whose every seed scored their training task."""
    return [group for group in groups if trained_for_search(group[0]) and trained_ndcg(group) is not None]


def before_after(group: Group, key: str) -> str:
    values, before = seed_values(group, "finetuned", key), group[0].baseline.score(key)
    return "-" if values is None or before is None else f"{before:.2f} -> {format_score(*mean_and_std(values))}"


def bm25_cell(bm25: Sequence[BM25Record], task: str) -> str:
    """BM25's nDCG@10 on `task` here (the newest `bm25` record that scored it, linked), and BEIR's published."""
    ours = [record for record in bm25 if record.score(f"{task}/{NDCG}") is not None]
    here = record_link(ours[-1], f"{ours[-1].score(f'{task}/{NDCG}'):.2f}") if ours else "not run"
    return f"{here} (BEIR {BEIR_BM25[task]:.1f})" if task in BEIR_BM25 else here


def retrieval_training_table(groups: list[Group], bm25: Sequence[BM25Record] = ()) -> list[str]:
    """One row per setup: the trained task's test nDCG@10 before and after (mean +- std over seeds), the gain,
    BM25's on the same queries (`bm25` records; BEIR's published in brackets), and the other tasks before -> after."""
    rows = [(describe(group), str(group[0].config.hard_negatives), machine_label(group[0].environment.hardware),
             str(len(group)), trained_task(group),
             *gain_cells(group[0].baseline.scores[f"{trained_task(group)}/{NDCG}"], trained_ndcg(group)),
             bm25_cell(bm25, trained_task(group)), *(before_after(group, key) for key in SIDE_EFFECTS), sources(group))
            for group in retrieval_groups(groups)]
    return [fill("results", "trained-for-retrieval"), "", *markdown_table(
        ("setup", "hard negatives", "device", "seeds", "task", "baseline", "fine-tuned", "gain", "BM25",
         *(SCORE_LABELS[key] for key in SIDE_EFFECTS), "source"), rows, "lrlrlrrrr" + "l" * len(SIDE_EFFECTS) + "l"),
            ""] if rows else []


def plot_retrieval_training(groups: list[Group], path: Path) -> bool:
    """The trained task's nDCG@10 for each setup: baseline, and each seed's fine-tuned score with their mean."""
    import matplotlib.pyplot as plt

    trained = retrieval_groups(groups)
    if not trained:
        return False
    figure, axes = plt.subplots(figsize=(7, 0.8 + 0.7 * len(trained)))
    for row, group in enumerate(trained):
        values = trained_ndcg(group)
        axes.scatter(values, [row] * len(values), color="tab:orange", zorder=3,
                     label="fine-tuned, one per seed" if row == 0 else None)
        axes.scatter([mean_and_std(values)[0]], [row], marker="|", s=400, color="tab:red", zorder=3,
                     label="mean over seeds" if row == 0 else None)
        axes.scatter([group[0].baseline.scores[f"{trained_task(group)}/{NDCG}"]], [row], marker="x", color="grey",
                     label="baseline" if row == 0 else None)
    axes.set_yticks(range(len(trained)), [short_setup(group[0]) for group in trained], fontsize=8)
    axes.set_xlabel("test nDCG@10 x100 (exact search)")
    axes.set_title("Trained for retrieval: baseline vs fine-tuned", fontsize=9)
    axes.legend(fontsize=7, loc="lower right")
    return save_plot(figure, path)


def short_setup(record: FinetuneRecord) -> str:
    """'scifact, 3 hard neg., lr 5e-05, 3 ep., fp32': what tells the retrieval runs apart, short enough for an axis."""
    config = record.config
    return (f"{text(Path(config.train_task).name)}, {config.hard_negatives} hard neg., lr {config.lr:g}, "
            f"{config.epochs} ep., {config.precision}")


def approximate_index_table(records: list[AnyRecord]) -> list[str]:
    """`evaluate --index` runs of models trained for retrieval: approximate against exact nDCG@10."""
    rows = []
    for record in records:
        if not isinstance(record, EvaluateRecord) or "retrieval-" not in record.config.model:
            continue
        config, scores = record.config, record.scores
        knobs = "".join(f", {option} {value}" for option, value in
                        (("nprobe", config.nprobe), ("efSearch", config.ef_search)) if value is not None)
        for task in tasks_with(sorted(scores), f"approx_{NDCG}"):
            exact, approximate = scores[f"{task}/{NDCG}"], scores[f"{task}/approx_{NDCG}"]
            rows.append((code(config.model), text(task), config.index + knobs, f"{exact:.2f}", f"{approximate:.2f}",
                         f"{100 * approximate / exact:.1f}%", f"{scores[f'{task}/approx_recall@10_vs_exact']:.2f}",
                         record_link(record)))
    return [fill("results", "ann-after-training"), "", *markdown_table(
        ("model", "task", "index", "exact nDCG@10", "approximate nDCG@10", "kept", "recall@10 vs exact", "source"),
        rows, "lllrrrrl"), ""] if rows else []


def retrieval_sections(groups: list[Group], records: list[AnyRecord], bm25: Sequence[BM25Record],
                       plots_dir: Path | None) -> list[str]:
    """The page's retrieval sections before the cut dimensions': every fine-tune's search before and after, then the
    runs trained for retrieval, with their plot and their approximate index."""
    lines = [*before_and_after(groups), ""]
    if trained := retrieval_training_table(groups, bm25):
        lines += trained
        if plots_dir is not None and plot_retrieval_training(groups, plots_dir / "retrieval-training.png"):
            lines += ("![trained for retrieval](plots/retrieval-training.png)", "")
        lines += approximate_index_table(records)
    return lines


# ----------------------------------------------------------------------------- retrieve, then re-rank

def rerank_row(first_stage: str, reranker: str, task: str, top_k: int, before: float, after: list[float],
               ms_per_query: list[float], record: AnyRecord, source: str, loss: str = "-") -> list[str]:
    """A row's cells: nDCG@10 of the search alone and re-ranked (mean +- std over `after`, one value per seed), the
    change and whether it rose, the milliseconds re-ranking added per query, and the re-ranker's training loss where
    it was trained in the same run."""
    before_cell, after_cell, gain = gain_cells(before, after)
    verdict = "raised" if round(mean_and_std(after)[0] - before, 2) > 0 else "not raised"
    return [code(first_stage), reranker, text(task), str(top_k), before_cell, after_cell, f"{gain} ({verdict})",
            f"{mean_and_std(ms_per_query)[0]:,.0f}", str(len(after)), loss, machine_label(record.environment.hardware),
            source]


def trained_rows(groups: list[Group]) -> list[list[str]]:
    """One row per re-ranker setup and task: the raw model's search before, re-ranked (mean +- std over seeds)."""
    rows = []
    for group in filter(reranks, groups):
        config, baseline = group[0].config, group[0].baseline.scores
        reranker = (f"trained here from {code(model_label(config.model))}: {retrieval_training(config)}, "
                    f"{config.epochs} epoch(s)")
        for task in tasks_with(baseline, NDCG):
            after = seed_values(group, "finetuned", f"{task}/{NDCG}")
            times = [record.finetuned.speeds.get(f"{task}/rerank_ms_per_query") for record in group]
            if after is not None and None not in times:
                rows.append(rerank_row(model_label(config.model), reranker, task, config.rerank_top_k,
                                       baseline[f"{task}/{NDCG}"], after, times, group[0], sources(group),
                                       training_loss(group)))
    return rows


def evaluate_rows(records: list[AnyRecord]) -> list[list[str]]:
    """One row per `evaluate --rerank` run and task."""
    return [rerank_row(model_label(record.config.model), code(model_label(record.config.rerank)), task,
                       record.config.rerank_top_k, record.scores[f"{task}/{NDCG}"],
                       [record.scores[f"{task}/rerank_{NDCG}"]], [record.speeds[f"{task}/rerank_ms_per_query"]],
                       record, f"[records]({quote(f'records/{record.path}/')})")
            for record in records if isinstance(record, EvaluateRecord) and record.config.rerank
            for task in tasks_with(record.scores, f"rerank_{NDCG}")]


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
                    start=", ".join(sorted({code(model_label(group[0].config.model)) for group in failed}))),
               ""] if failed else []
    return [fill("results", "rerank"), "", *verdict, *markdown_table(
        ("first stage (bi-encoder)", "re-ranker", "task", "top K re-ranked", "nDCG@10 search alone", "re-ranked",
         "change", "ms per query added", "seeds", "re-ranker's train loss, first -> last", "device", "source"),
        rows, "lllrrrrrrlll"), ""]
