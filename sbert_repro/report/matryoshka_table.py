"""results/README.md's "Matryoshka: score against dimension" section: each fine-tune trained with MatryoshkaLoss
(`--matryoshka-dims`), scored at its full size and cut to each trained dimension, against plain truncation of the
raw model (the same run's baseline, scored at the same dimensions) and, where one was scored cut, the same fine-tune
without Matryoshka; a plot per run, and whether the goal at 128 dimensions (GOAL_DIM, GOAL_SHARE) is met."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbert_repro.report.dimension_table import at, bytes_per_vector, scored_dimensions
from sbert_repro.report.labels import format_score, mean_and_std
from sbert_repro.report.markdown import SCORE_LABELS, SEARCH, STSB, markdown_table
from sbert_repro.report.plots import plot_title, save_plot
from sbert_repro.report.prose import fill, fill_some
from sbert_repro.report.record_groups import SETUP_FIELDS, describe, run_folders, seed_values, setting
from sbert_repro.runs.schema import FinetuneRecord

Group = list[FinetuneRecord]
Cell = tuple[float, float | None] | None  # (mean, std over seeds), or None where not scored

# The scores shown, by their key at the full size ("@d" goes after the task's name), where every seed scored them.
MEASURES = tuple((key, SCORE_LABELS[key]) for key in (STSB, SEARCH))
GOAL_DIM = 128  # the goal: at 128 dimensions the Matryoshka model ...
GOAL_SHARE = 98.0  # ... keeps at least this share (%) of its full-size scores
# What a fine-tune without Matryoshka may differ in from a Matryoshka one and still show what Matryoshka changed;
# batch order only adds to the seed-to-seed spread (as in loss_table.py).
TWIN_FIELDS = tuple(name for name in SETUP_FIELDS if name not in ("matryoshka_dims", "group_by_length"))


@dataclass(frozen=True)
class Column:
    """A column of the table per measure, and a line of the plot: `records`' scores at `stage`, at each size."""

    name: str
    records: Group  # the raw model: one record, its baseline shared by the seeds
    stage: str
    style: dict[str, Any]

    def cell(self, key: str, dim: int | None) -> Cell:
        values = seed_values(self.records, self.stage, at(key, dim))
        return None if values is None else mean_and_std(values)


def cut_dims(group: Group) -> list[int]:
    """The dimensions below the full size the group's fine-tuned model was scored at, largest first."""
    return scored_dimensions(group[0].finetuned.scores)


def measures(group: Group) -> list[tuple[str, str]]:
    return [(key, label) for key, label in MEASURES if seed_values(group, "finetuned", key) is not None]


def columns(group: Group, groups: list[Group]) -> list[Column]:
    """Matryoshka-trained, the raw model truncated, and the same fine-tune without Matryoshka (TWIN_FIELDS alike),
    truncated, where one is recorded that was scored cut to fewer dimensions."""
    shown = [Column("Matryoshka-trained", group, "finetuned", {"marker": "o"}),
             Column("raw model, truncated", group[:1], "baseline", {"marker": "x", "linestyle": "--"})]
    twins = [other for other in groups if not other[0].config.matryoshka_dims and cut_dims(other)
             and all(str(setting(other[0], name)) == str(setting(group[0], name)) for name in TWIN_FIELDS)]
    without = [Column("trained without Matryoshka, truncated", twin, "finetuned", {"marker": "s", "linestyle": ":"})
               for twin in twins[:1]]
    return shown + without


def shown_columns(group: Group, shown: list[Column]) -> list[tuple[str, str, Column]]:
    """(key, label, column) per measure shown, the measure's columns that hold a score cut to fewer dimensions: a run
    without Matryoshka scored cut on STSb only gets no SciFact column."""
    return [(key, label, column) for key, label in measures(group) for column in shown
            if any(column.cell(key, dim) is not None for dim in cut_dims(group))]


def kept(cell: Cell, full: Cell) -> float | None:
    """A cut vector's score as a share (%) of the same model's full-size score (of the means over seeds)."""
    return None if cell is None or full is None else 100 * cell[0] / full[0]


def shown(cell: Cell, full: Cell | None) -> str:
    """'85.10 +- 0.12 (99.1%)' cut to fewer dimensions, '85.80 +- 0.10' at the full size (`full` None)."""
    if cell is None:
        return "-"
    share = kept(cell, full)
    return format_score(*cell) + ("" if share is None else f" ({share:.1f}%)")


def matryoshka_table(group: Group, table: list[tuple[str, str, Column]]) -> list[str]:
    rows = [(str(dim or "full"), *(shown(column.cell(key, dim), None if dim is None else column.cell(key, None))
                                   for key, _, column in table), bytes_per_vector(group[0].finetuned, dim))
            for dim in (None, *cut_dims(group))]
    return markdown_table(("dimensions", *(f"{label}: {column.name}" for _, label, column in table),
                           "bytes per vector"), rows, "r" * (len(table) + 2))


def goal_sentence(group: Group, trained: Column, raw: Column) -> list[str]:
    """The goal at GOAL_DIM dimensions: the share of its full-size scores the Matryoshka model keeps, beside
    plain truncation's, and whether each reaches GOAL_SHARE (unrounded); [] where GOAL_DIM was not scored."""
    scored = dict(measures(group))
    if GOAL_DIM not in cut_dims(group) or STSB not in scored:
        return []

    def share(column: Column, key: str) -> float | None:
        return kept(column.cell(key, GOAL_DIM), column.cell(key, None))

    shares = {name: "-" if value is None else f"{value:.1f}%" for name, value in (
        ("stsb", share(trained, STSB)), ("scifact", share(trained, SEARCH)), ("raw_stsb", share(raw, STSB)),
        ("raw_scifact", share(raw, SEARCH)))}
    sentence = fill_some("results", "matryoshka-goal" if SEARCH in scored else "matryoshka-goal-stsb",
                         {"dim": GOAL_DIM, **shares})
    short = [label for key, label in scored.items()
             if (value := share(trained, key)) is not None and value < GOAL_SHARE]
    verdict = (fill("results", "matryoshka-goal-missed", share=f"{GOAL_SHARE:g}", which=" and ".join(short)) if short
               else fill("results", "matryoshka-goal-met", share=f"{GOAL_SHARE:g}"))
    return [f"{sentence} {verdict}", ""]


def full_dimension(group: Group) -> tuple[int, str]:
    """Where the full size goes on the plot's axis, and its tick: the trained dimension that was not scored cut (the
    model's own); a run whose dimensions all lie below it puts 'full' one doubling past the largest."""
    cuts = cut_dims(group)
    full = [dim for dim in group[0].config.matryoshka_dims if dim not in cuts]
    return (max(full), f"full\n({max(full)})") if full else (2 * cuts[0], "full")


def plot_matryoshka(group: Group, table: list[tuple[str, str, Column]], path: Path) -> bool:
    """Score against dimension, a panel per measure: each column's mean (std over seeds as error bars)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    shown_measures, cuts = measures(group), cut_dims(group)
    full, full_tick = full_dimension(group)
    positions = [full, *cuts]
    figure, panels = plt.subplots(1, len(shown_measures), figsize=(5 * len(shown_measures), 4), squeeze=False)
    for axes, (key, label) in zip(panels[0], shown_measures, strict=True):
        for column in (column for shown_key, _, column in table if shown_key == key):
            points = [(x, cell) for x, dim in zip(positions, (None, *cuts), strict=True)
                      if (cell := column.cell(key, dim)) is not None]
            if points:
                axes.errorbar([x for x, _ in points], [cell[0] for _, cell in points],
                              yerr=[cell[1] or 0 for _, cell in points], capsize=3, label=column.name, **column.style)
        axes.set_xscale("log", base=2)
        axes.xaxis.set_minor_locator(NullLocator())  # only the scored dimensions are ticks
        axes.set_xticks(positions, [full_tick, *map(str, cuts)])
        axes.set_xlabel("dimensions (the first d, re-normalised)")
        axes.set_ylabel(f"{label} x100")
        axes.legend(fontsize=7)
    figure.suptitle(plot_title(group), fontsize=8)
    return save_plot(figure, path)


def matryoshka_section(groups: list[Group], plots_dir: Path | None) -> list[str]:
    """The section: per Matryoshka group (one scored cut to fewer dimensions, on a measure shown) its table, the goal
    at GOAL_DIM and its plot; [] without such a group."""
    trained = [group for group in groups if group[0].config.matryoshka_dims and cut_dims(group) and measures(group)]
    if not trained:
        return []
    lines = [fill("results", "matryoshka"), ""]
    for group in trained:
        shown = columns(group, groups)
        table = shown_columns(group, shown)
        lines += [fill("results", "matryoshka-group", setup=describe(group)), "",
                  *matryoshka_table(group, table), "", *goal_sentence(group, *shown[:2])]
        name = f"matryoshka-{run_folders(group)[0]}.png"  # named by the run it shows, as the other plots
        if plots_dir is not None and plot_matryoshka(group, table, plots_dir / name):
            lines += [fill("results", "matryoshka-plot"), "", f"![score against dimension](plots/{name})", ""]
    return lines
