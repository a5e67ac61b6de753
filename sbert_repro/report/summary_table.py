"""The gain at a glance: results/README.md's first screen and README.md's headline, from the committed records.

One table answers the mission: the raw model, the same model after the paper's cosine fine-tune and after training
for search (and BM25 where recorded), on STSb test, the seven STS tasks and SciFact, each a mean +- std over seeds
with its records; the paper's bert-base-uncased rows below it, labelled as the paper's. One plot draws it, and two
sentences say what it shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sbert_repro.config.training import TrainConfig
from sbert_repro.data.tasks import HEADLINE_RETRIEVAL_TASK, STS_AVERAGE, TRAIN_TASK
from sbert_repro.report import paper
from sbert_repro.report.labels import format_gain, format_score, mean_and_std
from sbert_repro.report.markdown import SCORE_LABELS, SEARCH, STS_AVG, STSB, markdown_table, record_link
from sbert_repro.report.plots import save_plot
from sbert_repro.report.prose import fill
from sbert_repro.report.record_groups import retrieval_training, seed_values, setting, sources
from sbert_repro.runs.paths import model_label

# The columns, by score key.
COLUMNS = {STSB: "STSb test Spearman", STS_AVG: "7 STS tasks, mean Spearman", SEARCH: SCORE_LABELS[SEARCH]}
# What makes a run the paper's SBERT-STSb recipe: TrainConfig's defaults for these options (the paper's), in fp32
# with random batches, as the paper trained.
RECIPE_OPTIONS = ("objective", "pooling", "epochs", "batch_size", "lr", "warmup_ratio", "weight_decay",
                  "max_seq_length", "max_train_samples", "matryoshka_dims", "stsb_objective")


# A row's name in the plot's legend (the table names the training in full).
LEGEND = {"raw": "raw", "recipe": "+ sts-cosine, the paper's recipe", "search": "+ trained for search on SciFact",
          "bm25": "BM25"}


def is_paper_recipe(record: dict[str, Any]) -> bool:
    defaults = TrainConfig().to_dict()
    return (all(setting(record, option) == defaults[option] for option in RECIPE_OPTIONS)
            and setting(record, "precision") == "fp32" and not setting(record, "group_by_length"))


def headline_groups(groups: list[list[dict[str, Any]]]) -> tuple[list[dict[str, Any]] | None, ...]:
    """The paper's recipe and training for search on SciFact: of each, the run with most seeds (the first on a tie)."""
    def most_seeds(chosen: list[list[dict[str, Any]]]) -> list[dict[str, Any]] | None:
        return max(chosen, key=len) if chosen else None

    recipe = most_seeds([g for g in groups if is_paper_recipe(g[0])])
    search = most_seeds([g for g in groups if setting(g[0], "objective") == "retrieval"
                         and setting(g[0], "train_task") == HEADLINE_RETRIEVAL_TASK
                         and not setting(g[0], "matryoshka_dims")])
    return recipe, search


def _finetuned(group: list[dict[str, Any]]) -> dict[str, tuple[float, float | None]]:
    found = {}
    for key in COLUMNS:
        values = seed_values(group, "finetuned", key)
        if values is not None:
            found[key] = mean_and_std(values)
    return found


def summary_rows(groups: list[list[dict[str, Any]]], bm25: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our rows, each {label, role, scores {key: (mean, std)}, seeds, source, baseline}: the raw model's scores
    from the shown runs' own baselines, then each fine-tune, then BM25."""
    recipe, search = headline_groups(groups)
    shown = [(role, group) for role, group in (("recipe", recipe), ("search", search)) if group is not None]
    rows: list[dict[str, Any]] = []
    for role, group in shown:
        baseline = {key: value for key, value in group[0]["baseline"]["scores"].items() if key in COLUMNS}
        if not rows:
            rows.append({"label": f"{model_label(setting(group[0], 'model'))}, raw (before any training)",
                         "role": "raw", "scores": {}, "seeds": None, "source": sources(group), "baseline": {}})
        rows[0]["scores"] = {**{key: (value, None) for key, value in baseline.items()}, **rows[0]["scores"]}
        rows.append({"label": _training(role, group), "role": role, "scores": _finetuned(group), "seeds": len(group),
                     "source": sources(group), "baseline": baseline})
    for record in bm25:
        config = record["config"]
        rows.append({"label": f"BM25 (bm25s, {config['method']}, k1 {config['k1']:g}, b {config['b']:g}, "
                              f"{config['stemmer'] or 'no'} stemmer)", "role": "bm25", "seeds": None, "baseline": {},
                     "scores": {key: (value, None) for key, value in record["scores"].items() if key in COLUMNS},
                     "source": record_link(record)})
    return rows


def _training(role: str, group: list[dict[str, Any]]) -> str:
    record = group[0]
    if role == "recipe":
        return f"+ the paper's recipe: sts-cosine on STSb train, {setting(record, 'epochs')} epochs"
    bf16 = ", bf16" if setting(record, "precision") == "bf16" else ""
    return f"+ trained for search: {retrieval_training(record)}, {setting(record, 'epochs')} epochs{bf16}"


def _cell(scores: dict[str, tuple[float, float | None]], key: str) -> str:
    return format_score(*scores[key]) if key in scores else "-"


def summary_table(rows: list[dict[str, Any]]) -> list[str]:
    ours = [(row["label"], *(_cell(row["scores"], key) for key in COLUMNS), str(row["seeds"] or "-"), row["source"])
            for row in rows]
    raw = dict(zip(paper.TABLE1_COLUMNS, paper.TABLE1["Avg. BERT embeddings"], strict=True))
    expected = dict(zip(paper.TABLE1_COLUMNS, paper.EXPECTED_MEAN_POOLING, strict=False))
    expected_avg = sum(paper.EXPECTED_MEAN_POOLING) / len(paper.EXPECTED_MEAN_POOLING)
    theirs = [("paper, bert-base-uncased, raw (Avg. BERT embeddings)", f"{raw[TRAIN_TASK]:.2f}",
               f"{raw[STS_AVERAGE]:.2f}", "-", "-", "paper, Table 1"),
              ("expected here: bert-base-uncased raw, `--pooling mean` (not run: needs the hub)",
               f"{expected[TRAIN_TASK]:.2f}", f"{expected_avg:.2f}", "-", "-",
               f"[{paper.EXPECTED_MEAN_POOLING_SOURCE}]({paper.EXPECTED_MEAN_POOLING_URL})"),
              ("paper, bert-base-uncased + sts-cosine on STSb train (SBERT-STSb-base)",
               format_score(*paper.TABLE2[paper.TRAINED_ROW["sts-cosine"]]), "n/r", "-", str(paper.TABLE2_SEEDS),
               "paper, Table 2")]
    return markdown_table(("model and training", *COLUMNS.values(), "seeds", "source"), [*ours, *theirs],
                          "l" + "r" * len(COLUMNS) + "rl")


def summary_sentences(rows: list[dict[str, Any]]) -> str:
    """What the table shows, in two sentences, from its own numbers; each gain is over the run's own baseline."""
    gains = []
    for role, key in (("recipe", STSB), ("search", SEARCH)):
        row = next((row for row in rows if row["role"] == role), None)
        if row is not None and key in row["scores"] and key in row["baseline"]:
            before, after = row["baseline"][key], row["scores"][key]
            gains.append(fill("results", f"summary-{role}", before=f"{before:.2f}", after=format_score(*after),
                              gain=format_gain(after[0] - before), seeds=row["seeds"]))
            bm25 = next((row for row in rows if row["role"] == "bm25" and key in row["scores"]), None)
            if role == "search" and bm25 is not None:
                gains[-1] += ", " + fill("results", "summary-bm25", score=f"{bm25['scores'][key][0]:.2f}")
    stsb = paper.TABLE1_COLUMNS.index(TRAIN_TASK)
    theirs = fill("results", "summary-paper", raw=f"{paper.TABLE1['Avg. BERT embeddings'][stsb]:.2f}",
                  trained=format_score(*paper.TABLE2[paper.TRAINED_ROW["sts-cosine"]]),
                  expected=f"{paper.EXPECTED_MEAN_POOLING[stsb]:.2f}", source=paper.EXPECTED_MEAN_POOLING_SOURCE)
    if not gains:
        return theirs
    model = rows[0]["label"].split(", raw")[0]
    return fill("results", "summary-ours", model=model, gains=", and ".join(gains)) + " " + theirs


def plot_summary(rows: list[dict[str, Any]], path: Path) -> bool:
    """Bars per column, one per row of ours (std as error bars), and the paper's two bert-base-uncased STSb values."""
    import matplotlib.pyplot as plt

    if not rows:
        return False
    figure, axes = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(rows)
    for number, row in enumerate(rows):
        keys = [k for k in COLUMNS if k in row["scores"]]
        positions = [list(COLUMNS).index(k) - 0.4 + width * (number + 0.5) for k in keys]
        axes.bar(positions, [row["scores"][k][0] for k in keys], width=width, label=LEGEND[row["role"]],
                 yerr=[row["scores"][k][1] or 0 for k in keys], capsize=3)
    stsb = paper.TABLE1_COLUMNS.index(TRAIN_TASK)
    for value, style, label in ((paper.TABLE1["Avg. BERT embeddings"][stsb], ":", "paper, bert-base-uncased raw"),
                                (paper.TABLE2[paper.TRAINED_ROW["sts-cosine"]][0], "--",
                                 "paper, bert-base-uncased + sts-cosine")):
        axes.hlines(value, -0.45, 0.45, colors="black", linestyles=style, label=label)
    axes.set_xticks(range(len(COLUMNS)), list(COLUMNS.values()), fontsize=8)
    axes.set_ylabel("score x100 (Spearman / nDCG@10)")
    axes.set_ylim(0, 100)
    axes.set_title(f"{rows[0]['label'].split(', raw')[0]}: raw, fine-tuned, and the paper's bert-base-uncased",
                   fontsize=9)
    axes.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)  # below: no bar hidden
    return save_plot(figure, path)


def summary_section(groups: list[list[dict[str, Any]]], bm25: list[dict[str, Any]], plots_dir: Path | None
                    ) -> list[str]:
    rows = summary_rows(groups, bm25)
    lines = [fill("results", "summary"), "", *summary_table(rows), ""]
    if plots_dir is not None and plot_summary(rows, plots_dir / "summary.png"):
        lines += ["![the gain at a glance](plots/summary.png)", ""]
    return [*lines, summary_sentences(rows), ""]
