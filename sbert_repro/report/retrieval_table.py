"""results/README.md's "Trained for retrieval" section: runs of `--objective retrieval`, their gain on the task
they trained for beside BM25 (ours, `sbert-repro bm25`, and BEIR's published), and what the training did to the STS
tasks, with a plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sbert_repro.config.objectives import get_objective
from sbert_repro.report.labels import format_gain, format_score, machine_label, mean_and_std
from sbert_repro.report.markdown import SCORE_LABELS, STS_AVG, STSB, STSB_SEARCH, markdown_table, record_link
from sbert_repro.report.paper import BEIR_BM25
from sbert_repro.report.plots import save_plot
from sbert_repro.report.prose import fill
from sbert_repro.report.record_groups import describe, seed_values, sources
from sbert_repro.runs.schema import AnyRecord, BM25Record, EvaluateRecord, FinetuneRecord

Group = list[FinetuneRecord]
# The columns beside the trained task's own: another retrieval task, and the STS tasks, before -> after.
SIDE_EFFECTS = (STSB_SEARCH, STSB, STS_AVG)


def trained_for_search(record: FinetuneRecord) -> bool:
    """A bi-encoder fine-tuned on a retrieval task's judgements (a re-ranker trains on them too, as a cross-encoder)."""
    objective = get_objective(record.config.objective)
    return objective.train_data == "retrieval-judgements" and not objective.cross_encoder


def trained_task(group: Group) -> str:
    """The task a group trained on, by the name its scores go by (a BEIR folder's: its last part)."""
    return Path(group[0].config.train_task).name


def trained_ndcg(group: Group) -> list[float] | None:
    """The trained task's test nDCG@10 of every seed, or None where some seed did not score it."""
    return seed_values(group, "finetuned", f"{trained_task(group)}/ndcg@10")


def retrieval_groups(groups: list[Group]) -> list[Group]:
    """The fine-tune groups trained for retrieval whose every seed scored their training task."""
    return [group for group in groups if trained_for_search(group[0]) and trained_ndcg(group) is not None]


def before_after(group: Group, key: str) -> str:
    values, before = seed_values(group, "finetuned", key), group[0].baseline.score(key)
    return "-" if values is None or before is None else f"{before:.2f} -> {format_score(*mean_and_std(values))}"


def bm25_cell(bm25: Sequence[BM25Record], task: str) -> str:
    """BM25's nDCG@10 on `task` here (the newest `bm25` record that scored it, linked), and BEIR's published."""
    ours = [record for record in bm25 if record.score(f"{task}/ndcg@10") is not None]
    here = record_link(ours[-1], f"{ours[-1].score(f'{task}/ndcg@10'):.2f}") if ours else "not run"
    return f"{here} (BEIR {BEIR_BM25[task]:.1f})" if task in BEIR_BM25 else here


def retrieval_training_table(groups: list[Group], bm25: Sequence[BM25Record] = ()) -> list[str]:
    """One row per setup: the trained task's test nDCG@10 before and after (mean +- std over seeds), the gain,
    BM25's on the same queries (`bm25` records; BEIR's published in brackets), and the other tasks before -> after."""
    trained = retrieval_groups(groups)
    if not trained:
        return []
    rows = []
    for group in trained:
        task, record = trained_task(group), group[0]
        before = record.baseline.scores[f"{task}/ndcg@10"]
        mean, std = mean_and_std(trained_ndcg(group))
        rows.append((describe(group), str(record.config.hard_negatives), machine_label(record.environment.hardware),
                     str(len(group)), task, f"{before:.2f}", format_score(mean, std), format_gain(mean - before),
                     bm25_cell(bm25, task), *(before_after(group, key) for key in SIDE_EFFECTS), sources(group)))
    return [fill("results", "trained-for-retrieval"), "",
            *markdown_table(("setup", "hard negatives", "device", "seeds", "task", "baseline", "fine-tuned", "gain",
                             "BM25", *(SCORE_LABELS[key] for key in SIDE_EFFECTS), "source"), rows,
                            "lrlrlrrrr" + "l" * len(SIDE_EFFECTS) + "l")]


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
        axes.scatter([group[0].baseline.scores[f"{trained_task(group)}/ndcg@10"]], [row], marker="x", color="grey",
                     label="baseline" if row == 0 else None)
    axes.set_yticks(range(len(trained)), [_short_setup(group[0]) for group in trained], fontsize=8)
    axes.set_xlabel("test nDCG@10 x100 (exact search)")
    axes.set_title("Trained for retrieval: baseline vs fine-tuned", fontsize=9)
    axes.legend(fontsize=7, loc="lower right")
    return save_plot(figure, path)


def approximate_index_table(records: list[AnyRecord]) -> list[str]:
    """`evaluate --index` runs of models trained for retrieval: approximate against exact nDCG@10."""
    rows = []
    for record in records:
        if not isinstance(record, EvaluateRecord) or "retrieval-" not in record.config.model:
            continue
        config, scores = record.config, record.scores
        knobs = "".join(f", {option} {value}" for option, value in
                        (("nprobe", config.nprobe), ("efSearch", config.ef_search)) if value is not None)
        for task in [key.split("/")[0] for key in sorted(scores) if key.endswith("/approx_ndcg@10")]:
            exact, approximate = scores[f"{task}/ndcg@10"], scores[f"{task}/approx_ndcg@10"]
            rows.append((f"`{config.model}`", task, config.index + knobs, f"{exact:.2f}", f"{approximate:.2f}",
                         f"{100 * approximate / exact:.1f}%", f"{scores[f'{task}/approx_recall@10_vs_exact']:.2f}",
                         record_link(record)))
    if not rows:
        return []
    return [fill("results", "ann-after-training"), "",
            *markdown_table(("model", "task", "index", "exact nDCG@10", "approximate nDCG@10", "kept",
                             "recall@10 vs exact", "source"), rows, "lllrrrrl")]


def _short_setup(record: FinetuneRecord) -> str:
    """'scifact, 3 hard neg., lr 5e-05, 3 ep., fp32': what tells the retrieval runs apart, short enough for an axis."""
    config = record.config
    return (f"{Path(config.train_task).name}, {config.hard_negatives} hard neg., lr {config.lr:g}, "
            f"{config.epochs} ep., {config.precision}")
