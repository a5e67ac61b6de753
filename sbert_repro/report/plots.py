"""The results page's plots, and how every plot is saved (no metadata: the same records give the same bytes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sbert_repro.report.labels import format_gain, mean_and_std
from sbert_repro.report.markdown import STSB
from sbert_repro.report.record_groups import describe
from sbert_repro.runs.schema import FinetuneRecord


def plot_gains(group: list[FinetuneRecord], path: Path) -> bool:
    """Per-task bars, baseline vs fine-tuned (mean, std as error bars)."""
    import matplotlib.pyplot as plt

    base = group[0].baseline.scores
    keys = [k for k in base if (k.endswith("/spearman") or k.endswith("/ndcg@10"))
            and all(k in r.finetuned.scores for r in group)]  # tasks every seed scored
    after = [mean_and_std([r.finetuned.scores[k] for r in group]) for k in keys]
    figure, axes = plt.subplots(figsize=(max(6, 0.9 * len(keys)), 4))
    positions = range(len(keys))
    axes.bar([p - 0.2 for p in positions], [base[k] for k in keys], width=0.4, label="baseline")
    axes.bar([p + 0.2 for p in positions], [m for m, _ in after], width=0.4, yerr=[s or 0 for _, s in after],
             label="fine-tuned", capsize=3)
    for position, key, (mean, _) in zip(positions, keys, after, strict=True):
        axes.text(position, max(base[key], mean) + 1.5, format_gain(mean - base[key]), ha="center", fontsize=7)
    axes.set_ylim(0, 105)
    axes.set_xticks(list(positions), [k.replace("/", "\n") for k in keys], fontsize=8)
    axes.set_ylabel("score x100 (Spearman / nDCG@10)")
    axes.set_title(plot_title(group), fontsize=8)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside the axes: it never covers a bar or a label
    return save_plot(figure, path)


# What each kind of validation scored, as training records name it, and the axis that shows it.
VALIDATION_AXES = {"spearman": "STSb validation Spearman x100", "ndcg@10": "held-out train queries nDCG@10 x100"}


def plot_validation(group: list[FinetuneRecord], path: Path) -> bool:
    """The validation score after each epoch (STSb Spearman, or held-out queries' nDCG@10), one line per seed."""
    import matplotlib.pyplot as plt

    metric = next((metric for metric in VALIDATION_AXES if group[0].training.validation_curve(metric)[0]), None)
    if metric is None:
        return False
    figure, axes = plt.subplots(figsize=(6, 4))
    for record in group:
        axes.plot(*record.training.validation_curve(metric), marker="o", label=f"seed {record.config.seed}")
    axes.set_xlabel("epoch")
    axes.set_ylabel(VALIDATION_AXES[metric])
    axes.set_title(plot_title(group), fontsize=8)
    axes.legend(fontsize=7)
    return save_plot(figure, path)


def plot_seed_spread(group: list[FinetuneRecord], path: Path) -> bool:
    """STSb test Spearman of each seed, against the baseline (runs that scored STSb test)."""
    import matplotlib.pyplot as plt

    values = [r.finetuned.score(STSB) for r in group]
    if None in values:
        return False
    figure, axes = plt.subplots(figsize=(6, 3))
    axes.scatter(values, [0] * len(values), label="fine-tuned, one per seed")
    axes.axvline(group[0].baseline.score(STSB), color="grey", linestyle="--", label="baseline")
    axes.set_yticks([])
    axes.set_xlabel("STSb test Spearman x100")
    axes.set_title(plot_title(group), fontsize=8)
    axes.legend(fontsize=7)
    return save_plot(figure, path)


def plot_title(group: list[FinetuneRecord]) -> str:
    return describe(group).replace("`", "").replace("\\|", "|")  # plain text, not Markdown


def save_plot(figure: Any, path: Path) -> bool:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    # No metadata: a PNG's bytes then depend only on what is drawn.
    figure.savefig(temporary, format="png", dpi=100, metadata={"Software": None}, bbox_inches="tight")
    plt.close(figure)
    temporary.replace(path)
    return True
