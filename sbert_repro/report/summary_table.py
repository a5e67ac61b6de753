"""The gain at a glance: results/README.md's first screen and README.md's headline, from the committed records.

One table answers the mission: the raw model, the same model after the paper's cosine fine-tune and after training
for search (and BM25 where recorded), on STSb test, the seven STS tasks and SciFact, each a mean +- std over seeds
with its records; the paper's bert-base-uncased rows below it, labelled as the paper's. One plot draws it, and two
sentences say what it shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sbert_repro.config.encoding import DEFAULT_POOLING
from sbert_repro.config.training import TrainConfig
from sbert_repro.data.tasks import HEADLINE_RETRIEVAL_TASK, STS_AVERAGE, TRAIN_TASK
from sbert_repro.report import paper
from sbert_repro.report.labels import format_gain, format_score, mean_and_std
from sbert_repro.report.markdown import SCORE_LABELS, SEARCH, STS_AVG, STSB, markdown_table, record_link
from sbert_repro.report.plots import save_plot
from sbert_repro.report.prose import fill
from sbert_repro.report.record_groups import retrieval_training, seed_values, setting, sources
from sbert_repro.report.retrieval_table import trained_for_search
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.schema import BM25Record, FinetuneRecord

Group = list[FinetuneRecord]
Cell = tuple[float, float | None]  # mean, std over seeds (None: one value)
# The columns, by score key.
COLUMNS = {STSB: "STSb test Spearman", STS_AVG: "7 STS tasks, mean Spearman", SEARCH: SCORE_LABELS[SEARCH]}
# What makes a run the paper's SBERT-STSb recipe: TrainConfig's defaults for these options (the paper's), in fp32
# with random batches, as the paper trained.
RECIPE_OPTIONS = ("objective", "pooling", "epochs", "batch_size", "lr", "warmup_ratio", "weight_decay",
                  "max_seq_length", "max_train_samples", "matryoshka_dims", "stsb_objective")
# The paper's bert-base-uncased by column: raw with mean pooling (Table 1), as reported with today's libraries (a
# value from the source named, not a measurement here), and trained with its recipe (Table 2, STSb test).
PAPER_RAW = dict(zip(paper.TABLE1_COLUMNS, paper.TABLE1[paper.TABLE1_ROW_FOR_POOLING[DEFAULT_POOLING]], strict=True))
EXPECTED = dict(zip(paper.TABLE1_COLUMNS, paper.EXPECTED_MEAN_POOLING, strict=False))
PAPER_TRAINED = paper.TABLE2[paper.TRAINED_ROW[TrainConfig.objective]]
# A row's name in the plot's legend (the table names the training in full).
LEGEND = {"raw": "raw", "recipe": "+ sts-cosine, the paper's recipe", "search": "+ trained for search on SciFact",
          "bm25": "BM25"}


@dataclass(frozen=True)
class SummaryRow:
    """One of our rows: what it is (its role, a key of LEGEND), its scores by column, its seeds (None: no seed), its
    records, and the scores of its run's own baseline, which its gains are over."""

    label: str
    role: str
    scores: dict[str, Cell]
    seeds: int | None
    source: str
    baseline: dict[str, float] = field(default_factory=dict)


def is_paper_recipe(record: FinetuneRecord) -> bool:
    defaults = TrainConfig().to_dict()
    return (all(setting(record, option) == defaults[option] for option in RECIPE_OPTIONS)
            and record.config.precision == "fp32" and not record.config.group_by_length)


def headline_groups(groups: list[Group]) -> tuple[Group | None, Group | None]:
    """The paper's recipe and training for search on SciFact: of each, the run with most seeds (the first on a tie)."""
    recipe = [group for group in groups if is_paper_recipe(group[0])]
    search = [group for group in groups if trained_for_search(group[0])
              and group[0].config.train_task == HEADLINE_RETRIEVAL_TASK and not group[0].config.matryoshka_dims]
    return max(recipe, key=len, default=None), max(search, key=len, default=None)


def summary_rows(groups: list[Group], bm25: list[BM25Record]) -> list[SummaryRow]:
    """Our rows: the raw model's scores from the shown runs' own baselines, then each fine-tune, then BM25."""
    shown = [(role, group) for role, group in zip(("recipe", "search"), headline_groups(groups), strict=True)
             if group is not None]
    rows, raw = [], {}
    for role, group in shown:
        baseline = {key: value for key, value in group[0].baseline.scores.items() if key in COLUMNS}
        raw = {**{key: (value, None) for key, value in baseline.items()}, **raw}  # the first run's, where both have it
        scores = {key: mean_and_std(values) for key in COLUMNS if (values := seed_values(group, "finetuned", key))}
        rows.append(SummaryRow(training(role, group[0]), role, scores, len(group), sources(group), baseline))
    if shown:
        first = shown[0][1]
        rows.insert(0, SummaryRow(f"{model_label(first[0].config.model)}, raw (before any training)", "raw", raw, None,
                                  sources(first)))
    return rows + [SummaryRow(f"BM25 (bm25s, {record.config.method}, k1 {record.config.k1:g}, b {record.config.b:g}, "
                              f"{record.config.stemmer or 'no'} stemmer)", "bm25",
                              {key: (value, None) for key, value in record.scores.items() if key in COLUMNS}, None,
                              record_link(record)) for record in bm25]


def training(role: str, record: FinetuneRecord) -> str:
    config = record.config
    if role == "recipe":
        return f"+ the paper's recipe: sts-cosine on STSb train, {config.epochs} epochs"
    bf16 = ", bf16" if config.precision == "bf16" else ""
    return f"+ trained for search: {retrieval_training(config)}, {config.epochs} epochs{bf16}"


def summary_table(rows: list[SummaryRow]) -> list[str]:
    ours = [(row.label, *(format_score(*row.scores[key]) if key in row.scores else "-" for key in COLUMNS),
             str(row.seeds or "-"), row.source) for row in rows]
    theirs = [("paper, bert-base-uncased, raw (Avg. BERT embeddings)", f"{PAPER_RAW[TRAIN_TASK]:.2f}",
               f"{PAPER_RAW[STS_AVERAGE]:.2f}", "-", "-", "paper, Table 1"),
              ("reported, not measured here: bert-base-uncased raw, `--pooling mean` with today's libraries (not "
               "run: needs the hub)",
               f"{EXPECTED[TRAIN_TASK]:.2f}", f"{sum(EXPECTED.values()) / len(EXPECTED):.2f}", "-", "-",
               f"[{paper.EXPECTED_MEAN_POOLING_SOURCE}]({paper.EXPECTED_MEAN_POOLING_URL})"),
              ("paper, bert-base-uncased + sts-cosine on STSb train (SBERT-STSb-base)", format_score(*PAPER_TRAINED),
               "n/r", "-", str(paper.TABLE2_SEEDS), "paper, Table 2")]
    return markdown_table(("model and training", *COLUMNS.values(), "seeds", "source"), [*ours, *theirs],
                          "l" + "r" * len(COLUMNS) + "rl")


def summary_sentences(rows: list[SummaryRow]) -> str:
    """What the table shows, in two sentences, from its own numbers; each gain is over the run's own baseline."""
    gains = []
    for role, key in (("recipe", STSB), ("search", SEARCH)):
        row = next((row for row in rows if row.role == role), None)
        if row is not None and key in row.scores and key in row.baseline:
            before, after = row.baseline[key], row.scores[key]
            gains.append(fill("results", f"summary-{role}", before=f"{before:.2f}", after=format_score(*after),
                              gain=format_gain(after[0] - before), seeds=row.seeds))
            bm25 = next((row for row in rows if row.role == "bm25" and key in row.scores), None)
            if role == "search" and bm25 is not None:
                gains[-1] += ", " + fill("results", "summary-bm25", score=f"{bm25.scores[key][0]:.2f}")
    theirs = fill("results", "summary-paper", raw=f"{PAPER_RAW[TRAIN_TASK]:.2f}", trained=format_score(*PAPER_TRAINED),
                  expected=f"{EXPECTED[TRAIN_TASK]:.2f}", source=paper.EXPECTED_MEAN_POOLING_SOURCE)
    if not gains:
        return theirs
    ours = fill("results", "summary-ours", model=rows[0].label.split(", raw")[0], gains=", and ".join(gains))
    return f"{ours} {theirs}"


def plot_summary(rows: list[SummaryRow], path: Path) -> bool:
    """Bars per column, one per row of ours (std as error bars), and the paper's two bert-base-uncased STSb values."""
    import matplotlib.pyplot as plt

    if not any(row.role == "raw" for row in rows):  # BM25 alone: no model of ours to show, so no plot
        return False
    figure, axes = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(rows)
    for number, row in enumerate(rows):
        keys = [k for k in COLUMNS if k in row.scores]
        positions = [list(COLUMNS).index(k) - 0.4 + width * (number + 0.5) for k in keys]
        axes.bar(positions, [row.scores[k][0] for k in keys], width=width, label=LEGEND[row.role],
                 yerr=[row.scores[k][1] or 0 for k in keys], capsize=3)
    for value, style, label in ((PAPER_RAW[TRAIN_TASK], ":", "paper, bert-base-uncased raw"),
                                (PAPER_TRAINED[0], "--", "paper, bert-base-uncased + sts-cosine")):
        axes.hlines(value, -0.45, 0.45, colors="black", linestyles=style, label=label)
    axes.set_xticks(range(len(COLUMNS)), list(COLUMNS.values()), fontsize=8)
    axes.set_ylabel("score x100 (Spearman / nDCG@10)")
    axes.set_ylim(0, 100)
    axes.set_title(f"{rows[0].label.split(', raw')[0]}: raw, fine-tuned, and the paper's bert-base-uncased",
                   fontsize=9)
    axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)  # below: no bar hidden
    return save_plot(figure, path)


def summary_section(groups: list[Group], bm25: list[BM25Record], plots_dir: Path | None) -> list[str]:
    rows = summary_rows(groups, bm25)
    lines = [fill("results", "summary"), "", *summary_table(rows), ""]
    if plots_dir is not None and plot_summary(rows, plots_dir / "summary.png"):
        lines += ("![the gain at a glance](plots/summary.png)", "")
    return [*lines, summary_sentences(rows), ""]
