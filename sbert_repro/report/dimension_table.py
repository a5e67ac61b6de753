"""results/README.md's sections on vectors cut to their first d dimensions: "Vectors cut to fewer dimensions" (runs
that scored their tasks cut, `evaluate --dims` and a Matryoshka fine-tune's baseline, each dimension against the full
size), and "Matryoshka: score against dimension" (each fine-tune trained with MatryoshkaLoss, `--matryoshka-dims`,
against plain truncation of the raw model and, where one was scored cut, the same fine-tune without Matryoshka; a plot
per run, and whether the goal at GOAL_DIM dimensions, GOAL_SHARE, is met)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbert_repro.report.labels import format_score, mean_and_std
from sbert_repro.report.markdown import SCORE_LABELS, SEARCH, STS_AVG, STSB, code, markdown_table, record_link
from sbert_repro.report.plots import plot_title, save_plot
from sbert_repro.report.prose import fill, fill_some
from sbert_repro.report.record_groups import SETUP_FIELDS, describe, run_folders, seed_values, setting
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.record_parts import Scored
from sbert_repro.runs.schema import EvaluateRecord, FinetuneRecord

Group = list[FinetuneRecord]
Cell = tuple[float, float | None] | None  # (mean, std over seeds), or None where not scored
CUT = re.compile(r"^[^/@]+@(\d+)/")
# The scores a row of the first section shows, by their key at the full size ("@d" goes after the task's name).
COLUMNS = (STSB, STS_AVG, SEARCH)
# The scores the Matryoshka section shows, where every seed scored them.
MEASURES = tuple((key, SCORE_LABELS[key]) for key in (STSB, SEARCH))
GOAL_DIM = 128  # the goal: at 128 dimensions the Matryoshka model ...
GOAL_SHARE = 98.0  # ... keeps at least this share (%) of its full-size scores
# What a fine-tune without Matryoshka may differ in from a Matryoshka one and still show what Matryoshka changed:
# batch order only adds to the seed-to-seed spread (as in loss_table.py).
TWIN_FIELDS = tuple(name for name in SETUP_FIELDS if name not in ("matryoshka_dims", "group_by_length"))


def scored_dimensions(scores: dict[str, float]) -> list[int]:
    """The dimensions below the full size a set of scores holds, largest first."""
    return sorted({int(match.group(1)) for key in scores if (match := CUT.match(key))}, reverse=True)


def at(key: str, dim: int | None) -> str:
    """'stsb/spearman' at 128 dimensions: 'stsb@128/spearman'; at the full size (None) the key itself."""
    task, metric = key.split("/")
    return key if dim is None else f"{task}@{dim}/{metric}"


def bytes_per_vector(scored: Scored, dim: int | None) -> str:
    """What one vector costs in the exact index at this size, as the run measured it on its first retrieval task."""
    pattern = re.compile(r"^[^/@]+" + ("" if dim is None else f"@{dim}") + "/bytes_per_vector$")
    size = next((scored.speeds[key] for key in sorted(scored.speeds) if pattern.match(key)), None)
    return "-" if size is None else f"{size:.0f}"


def cut_cell(scored: Scored, key: str, dim: int | None) -> str:
    """'80.68 (98.3%)': a score cut to `dim` dimensions and its share of the full size's; the full size's alone."""
    full, value = scored.score(key), scored.score(at(key, dim))
    if value is None or full is None:
        return "-"
    return f"{value:.2f}" if dim is None else f"{value:.2f} ({100 * value / full:.1f}%)"


def dimension_table(records: list[FinetuneRecord | EvaluateRecord]) -> list[str]:
    """One row per scored dimension of each evaluate run (and each fine-tune's baseline) that has any."""
    rows = []
    for record in records:
        finetune = isinstance(record, FinetuneRecord)
        scored = record.baseline if finetune else record
        dims = scored_dimensions(scored.scores)
        if not dims or (finetune and record.config.seed != record.config.seeds[0]):
            continue  # a fine-tune's baseline is the same for every seed: shown once
        what = "baseline of a fine-tune" if finetune else "evaluate"
        rows += [(f"{code(model_label(record.config.model))} ({what})", str(dim or "full"),
                  *(cut_cell(scored, key, dim) for key in COLUMNS), bytes_per_vector(scored, dim), record_link(record))
                 for dim in (None, *dims)]
    return [fill("results", "dimensions"), "", *markdown_table(
        ("model", "dimensions", *(SCORE_LABELS[key] for key in COLUMNS), "bytes per vector", "source"), rows,
        "lr" + "r" * len(COLUMNS) + "rl"), ""] if rows else []


# ----------------------------------------------------------------------------- Matryoshka

@dataclass(frozen=True)
class Column:
    """A column of the Matryoshka table per measure, and a line of its plot: `records`' scores at `stage`, each size."""

    name: str
    records: Group  # the raw model: one record, its baseline shared by the seeds
    stage: str
    style: dict[str, Any]

    def cell(self, key: str, dim: int | None) -> Cell:
        values = seed_values(self.records, self.stage, at(key, dim))
        return None if values is None else mean_and_std(values)


def kept(cell: Cell, full: Cell) -> float | None:
    """A cut vector's score as a share (%) of the same model's full-size score (of the means over seeds)."""
    return None if cell is None or full is None else 100 * cell[0] / full[0]


def shown(cell: Cell, full: Cell) -> str:
    """'85.10 +- 0.12 (99.1%)' cut to fewer dimensions, '85.80 +- 0.10' at the full size (`full` None)."""
    share = kept(cell, full)
    return "-" if cell is None else format_score(*cell) + ("" if share is None else f" ({share:.1f}%)")


def cut_dims(group: Group) -> list[int]:
    """The dimensions below the full size the group's fine-tuned model was scored at, largest first."""
    return scored_dimensions(group[0].finetuned.scores)


def measures(group: Group) -> list[tuple[str, str]]:
    return [(key, label) for key, label in MEASURES if seed_values(group, "finetuned", key) is not None]


def columns(group: Group, groups: list[Group]) -> list[Column]:
    """Matryoshka-trained, the raw model truncated, and the same fine-tune without Matryoshka (TWIN_FIELDS alike)
    truncated, where one is recorded that was scored cut."""
    twins = [other for other in groups if not other[0].config.matryoshka_dims and cut_dims(other)
             and all(str(setting(other[0], name)) == str(setting(group[0], name)) for name in TWIN_FIELDS)]
    return [Column("Matryoshka-trained", group, "finetuned", {"marker": "o"}),
            Column("raw model, truncated", group[:1], "baseline", {"marker": "x", "linestyle": "--"}),
            *(Column("trained without Matryoshka, truncated", twin, "finetuned", {"marker": "s", "linestyle": ":"})
              for twin in twins[:1])]


def shown_columns(group: Group, shown_ones: list[Column]) -> list[tuple[str, str, Column]]:
    """(key, label, column) per measure shown, the measure's columns that hold a score cut to fewer dimensions: a run
    without Matryoshka scored cut on STSb only gets no SciFact column."""
    return [(key, label, column) for key, label in measures(group) for column in shown_ones
            if any(column.cell(key, dim) is not None for dim in cut_dims(group))]


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
    lines = [fill("results", "matryoshka"), ""] if trained else []
    for group in trained:
        shown_ones = columns(group, groups)
        table = shown_columns(group, shown_ones)
        lines += [fill("results", "matryoshka-group", setup=describe(group)), "",
                  *matryoshka_table(group, table), "", *goal_sentence(group, *shown_ones[:2])]
        name = f"matryoshka-{run_folders(group)[0]}.png"  # named by the run it shows, as the other plots
        if plots_dir is not None and plot_matryoshka(group, table, plots_dir / name):
            lines += [fill("results", "matryoshka-plot"), "", f"![score against dimension](plots/{name})", ""]
    return lines
