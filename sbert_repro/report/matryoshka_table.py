"""results/README.md's "Matryoshka: score against dimension" section: each fine-tune trained with MatryoshkaLoss
(`--matryoshka-dims`), scored at its full size and cut to each trained dimension, against plain truncation of the
raw model (the same run's baseline, scored at the same dimensions) and, where one was scored cut, the same fine-tune
without Matryoshka; a plot per run, and whether the goal at 128 dimensions (GOAL_DIM, GOAL_SHARE) is met."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sbert_repro.report.dimension_table import at, scored_dimensions
from sbert_repro.report.labels import format_score, mean_and_std
from sbert_repro.report.markdown import SCORE_LABELS, SEARCH, STSB, markdown_table
from sbert_repro.report.plots import plot_title, save_plot
from sbert_repro.report.prose import fill
from sbert_repro.report.record_groups import GROUP_FIELDS, describe, run_folders, seed_values, setting

Group = list[dict[str, Any]]
Cell = tuple[float, float | None] | None  # (mean, std over seeds), or None where not scored
Series = tuple[str, Callable[[str, int | None], Cell], dict[str, Any]]  # (name, cell at (key, dim), plot style)

# The scores shown, by their key at the full size ("@d" goes after the task's name), where every seed scored them.
MEASURES = tuple((key, SCORE_LABELS[key]) for key in (STSB, SEARCH))
GOAL_DIM = 128  # the goal: at 128 dimensions the Matryoshka model ...
GOAL_SHARE = 98.0  # ... keeps at least this share (%) of its full-size scores
# What a fine-tune without Matryoshka may differ in from a Matryoshka one and still show what Matryoshka changed;
# batch order only adds to the seed-to-seed spread (as in loss_table.py).
IGNORED_FOR_TWIN = ("matryoshka_dims", "group_by_length")


def cut_dims(group: Group) -> list[int]:
    """The dimensions below the full size the group's fine-tuned model was scored at, largest first."""
    return scored_dimensions(group[0]["finetuned"]["scores"])


def measures(group: Group) -> list[tuple[str, str]]:
    return [(key, label) for key, label in MEASURES if seed_values(group, "finetuned", key) is not None]


def matryoshka_groups(groups: list[Group]) -> list[Group]:
    """The groups trained with MatryoshkaLoss that were scored cut to fewer dimensions, on a measure shown."""
    return [group for group in groups if setting(group[0], "matryoshka_dims") and cut_dims(group) and measures(group)]


def twin(group: Group, groups: list[Group]) -> Group | None:
    """The same fine-tune without Matryoshka (same objective, model and training but IGNORED_FOR_TWIN) whose
    fine-tuned model was scored cut to fewer dimensions; None where no such run is recorded."""
    def key(other: Group) -> tuple[str, ...]:
        return tuple(str(setting(other[0], name)) for name in GROUP_FIELDS if name not in IGNORED_FOR_TWIN)
    return next((other for other in groups if not setting(other[0], "matryoshka_dims") and key(other) == key(group)
                 and cut_dims(other)), None)


def finetuned_cell(group: Group, key: str, dim: int | None) -> Cell:
    values = seed_values(group, "finetuned", at(key, dim))
    return None if values is None else mean_and_std(values)


def baseline_cell(group: Group, key: str, dim: int | None) -> Cell:
    value = group[0]["baseline"]["scores"].get(at(key, dim))  # the raw model: one baseline, shared by the seeds
    return None if value is None else (value, None)


def series(group: Group, without: Group | None) -> list[Series]:
    """The table's columns per measure, and the plot's lines: Matryoshka-trained, the raw model truncated, and the
    fine-tune without Matryoshka truncated where there is one."""
    lines: list[Series] = [
        ("Matryoshka-trained", lambda key, dim: finetuned_cell(group, key, dim), {"marker": "o"}),
        ("raw model, truncated", lambda key, dim: baseline_cell(group, key, dim), {"marker": "x", "linestyle": "--"})]
    if without is not None:
        lines.append(("trained without Matryoshka, truncated", lambda key, dim: finetuned_cell(without, key, dim),
                      {"marker": "s", "linestyle": ":"}))
    return lines


def shown_columns(group: Group, columns: list[Series]) -> list[tuple[str, str, Series]]:
    """(key, label, column) per measure shown, the measure's columns that hold a score cut to fewer dimensions: a run
    without Matryoshka scored cut on STSb only gets no SciFact column."""
    return [(key, label, column) for key, label in measures(group) for column in columns
            if any(column[1](key, dim) is not None for dim in cut_dims(group))]


def kept(cell: Cell, full: Cell) -> float | None:
    """A cut vector's score as a share (%) of the same model's full-size score (of the means over seeds)."""
    return None if cell is None or full is None else 100 * cell[0] / full[0]


def shown(cell: Cell, full: Cell | None) -> str:
    """'85.10 +- 0.12 (99.1%)' cut to fewer dimensions, '85.80 +- 0.10' at the full size (`full` None)."""
    if cell is None:
        return "-"
    share = kept(cell, full)
    return format_score(*cell) + ("" if share is None else f" ({share:.1f}%)")


def bytes_per_vector(group: Group, dim: int | None) -> str:
    """What one vector costs in the exact index at this size, as the run measured it on its first retrieval task."""
    speeds = group[0]["finetuned"].get("speeds", {})
    pattern = re.compile(r"^[^/@]+" + ("" if dim is None else f"@{dim}") + "/bytes_per_vector$")
    size = next((speeds[key] for key in sorted(speeds) if pattern.match(key)), None)
    return "-" if size is None else f"{size:.0f}"


def matryoshka_table(group: Group, columns: list[Series]) -> list[str]:
    shown_here = shown_columns(group, columns)
    rows = [(str(dim or "full"), *(shown(cell_of(key, dim), None if dim is None else cell_of(key, None))
                                   for key, _, (_, cell_of, _) in shown_here), bytes_per_vector(group, dim))
            for dim in (None, *cut_dims(group))]
    return markdown_table(("dimensions", *(f"{label}: {name}" for _, label, (name, _, _) in shown_here),
                           "bytes per vector"), rows, "r" * (len(shown_here) + 2))


def goal_sentence(group: Group) -> list[str]:
    """The goal at GOAL_DIM dimensions: the share of its full-size scores the Matryoshka model keeps, beside
    plain truncation's, and whether each reaches GOAL_SHARE (unrounded); [] where GOAL_DIM was not scored."""
    scored = dict(measures(group))
    if GOAL_DIM not in cut_dims(group) or STSB not in scored:
        return []
    trained = {key: kept(finetuned_cell(group, key, GOAL_DIM), finetuned_cell(group, key, None)) for key in scored}
    raw = {key: kept(baseline_cell(group, key, GOAL_DIM), baseline_cell(group, key, None)) for key in scored}

    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}%"

    if SEARCH in scored:
        sentence = fill("results", "matryoshka-goal", dim=GOAL_DIM, stsb=share(trained[STSB]),
                        scifact=share(trained[SEARCH]), raw_stsb=share(raw[STSB]), raw_scifact=share(raw[SEARCH]))
    else:
        sentence = fill("results", "matryoshka-goal-stsb", dim=GOAL_DIM, stsb=share(trained[STSB]),
                        raw_stsb=share(raw[STSB]))
    short = [label for key, label in scored.items() if (value := trained[key]) is not None and value < GOAL_SHARE]
    verdict = (fill("results", "matryoshka-goal-missed", share=f"{GOAL_SHARE:g}", which=" and ".join(short)) if short
               else fill("results", "matryoshka-goal-met", share=f"{GOAL_SHARE:g}"))
    return [f"{sentence} {verdict}", ""]


def full_dimension(group: Group) -> tuple[int, str]:
    """Where the full size goes on the plot's axis, and its tick: the trained dimension that was not scored cut (the
    model's own); a run whose dimensions all lie below it puts 'full' one doubling past the largest."""
    cuts = cut_dims(group)
    full = [dim for dim in setting(group[0], "matryoshka_dims") if dim not in cuts]
    return (max(full), f"full\n({max(full)})") if full else (2 * cuts[0], "full")


def plot_matryoshka(group: Group, columns: list[Series], path: Path) -> bool:
    """Score against dimension, a panel per measure: each column's mean (std over seeds as error bars)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    shown_measures, cuts = measures(group), cut_dims(group)
    full, full_tick = full_dimension(group)
    positions = [full, *cuts]
    figure, panels = plt.subplots(1, len(shown_measures), figsize=(5 * len(shown_measures), 4), squeeze=False)
    for axes, (key, label) in zip(panels[0], shown_measures, strict=True):
        for name, cell_of, style in (column for shown_key, _, column in shown_columns(group, columns)
                                     if shown_key == key):
            points = [(x, cell) for x, dim in zip(positions, (None, *cuts), strict=True)
                      if (cell := cell_of(key, dim)) is not None]
            if points:
                axes.errorbar([x for x, _ in points], [cell[0] for _, cell in points],
                              yerr=[cell[1] or 0 for _, cell in points], capsize=3, label=name, **style)
        axes.set_xscale("log", base=2)
        axes.xaxis.set_minor_locator(NullLocator())  # only the scored dimensions are ticks
        axes.set_xticks(positions, [full_tick, *map(str, cuts)])
        axes.set_xlabel("dimensions (the first d, re-normalised)")
        axes.set_ylabel(f"{label} x100")
        axes.legend(fontsize=7)
    figure.suptitle(plot_title(group), fontsize=8)
    return save_plot(figure, path)


def matryoshka_section(groups: list[Group], plots_dir: Path | None) -> list[str]:
    """The section: per Matryoshka group its table, the goal at GOAL_DIM and its plot; [] without such a group."""
    trained = matryoshka_groups(groups)
    if not trained:
        return []
    lines = [fill("results", "matryoshka"), ""]
    for group in trained:
        columns = series(group, twin(group, groups))
        lines += [fill("results", "matryoshka-group", setup=describe(group)), "",
                  *matryoshka_table(group, columns), "", *goal_sentence(group)]
        name = f"matryoshka-{run_folders(group)[0]}.png"  # named by the run it shows, as the other plots
        if plots_dir is not None and plot_matryoshka(group, columns, plots_dir / name):
            lines += [fill("results", "matryoshka-plot"), "", f"![score against dimension](plots/{name})", ""]
    return lines
