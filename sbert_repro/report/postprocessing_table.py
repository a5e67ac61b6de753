"""results/geometry.md's last table: STS scores of a model's raw vectors, of the same vectors post-processed
without training (`evaluate --postprocess`) and of the model fine-tuned, with bert-base-uncased's published
numbers (paper.py) where they are entered."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sbert_repro.report import paper
from sbert_repro.report.labels import format_gain, format_score, mean_and_std, short_model
from sbert_repro.report.markdown import STS_AVG, code, markdown_table, record_link
from sbert_repro.report.plots import save_plot
from sbert_repro.report.prose import fill
from sbert_repro.report.record_groups import finetune_groups, is_postprocessed, run_folders, seed_values, sources
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.records import EVALUATE_KIND
from sbert_repro.runs.schema import AnyRecord, EvaluateRecord, FinetuneRecord

PLOT = "geometry-postprocessing.png"  # one for the page: it compares every model's rows
STS_COLUMNS = paper.TABLE1_COLUMNS  # the paper's Table 1 columns, the 7-task average last
Cell = tuple[float, float | None] | None  # (mean, std over seeds), or None where the task was not scored


@dataclass(frozen=True)
class Row:
    """A table row, and what the plot needs of it: its short label, its average (the last column), its kind."""

    cells: tuple[str, ...]
    bar: str
    average: Cell
    fine_tuned: bool


def postprocessing_section(records: list[AnyRecord], plots_dir: Path | None) -> list[str]:
    """The table (one block of rows per post-processed model, then the published rows), its plot, its notes."""
    models = dict.fromkeys(model_label(record.config.model) for record in records if is_postprocessed(record))
    rows = [row for model in models for row in model_rows(records, model)]
    published = published_rows()
    lines = [fill("geometry", "postprocessing"), ""]
    if not rows:
        lines += [fill("geometry", "none-postprocessed"), ""]
    if rows or published:
        lines += [*markdown_table(("vectors", "fitted on", *STS_COLUMNS, "change in avg", "source"),
                                  [*(row.cells for row in rows), *published], "ll" + "r" * len(STS_COLUMNS) + "rl"),
                  ""]
    if plots_dir is not None and plot_averages(rows, plots_dir / PLOT):
        lines += [fill("geometry", "plot-postprocessing"), "", f"![7-task STS average per row](plots/{PLOT})", ""]
    if not published:
        lines += [fill("geometry", "bert-not-run"), ""]
    return lines


def model_rows(records: list[AnyRecord], model: str) -> list[Row]:
    """The model's plain evaluation (the first in path order that scored the average: the baseline of "change"),
    its post-processed evaluations, then its fine-tunes that scored STS tasks."""
    evaluated = [r for r in records if r.kind == EVALUATE_KIND and model_label(r.config.model) == model]
    plain = next((r for r in evaluated if not is_postprocessed(r) and r.score(STS_AVG) is not None), None)
    base = plain.score(STS_AVG) if plain else None
    rows = [evaluation_row(record, model, base)
            for record in ([plain] if plain else []) + [r for r in evaluated if is_postprocessed(r)]]
    for group in most_seeded_per_objective(records, model):
        cells = [None if (values := seed_values(group, "finetuned", f"{task}/spearman")) is None
                 else mean_and_std(values) for task in STS_COLUMNS]
        folder, config = run_folders(group)[0], group[0].config  # the table already names the model
        label = (f"fine-tuned: {code(folder)} ({config.objective}, {config.pooling} pooling, seeds "
                 f"{', '.join(str(r.config.seed) for r in group)})")
        if any(cells):  # a fine-tune that scored no STS task (retrieval only) has nothing to compare
            rows.append(row(label, "-", cells, base, sources(group), f"{folder} (fine-tuned)", fine_tuned=True))
    return rows


def evaluation_row(record: EvaluateRecord, model: str, base: float | None) -> Row:
    option, fit_on = record.config.postprocess, record.config.fit_on
    fitted = "-" if option is None else ("each task's own test sentences" if fit_on is None else code(fit_on))
    cells = [None if (value := record.score(f"{task}/spearman")) is None else (value, None) for task in STS_COLUMNS]
    return row(f"{code(model)}, {record.config.pooling} pooling, " + (code(option) if option else "raw vectors"),
               fitted,
               cells, base, record_link(record), f"{short_model(model)}, {option or 'raw'}" +
               ("" if fit_on is None else f" ({fit_on})"), fine_tuned=False)


def most_seeded_per_objective(records: list[AnyRecord], model: str) -> list[list[FinetuneRecord]]:
    """The model's fine-tunes that scored STS, one per objective: the run with the most seeds (the first, in path
    order, on a tie); every run of every setting is in results/README.md."""
    chosen: dict[str, list[FinetuneRecord]] = {}
    for group in finetune_groups(records):
        config = group[0].config
        scored = any(group[0].finetuned.score(f"{task}/spearman") is not None for task in STS_COLUMNS)
        if model_label(config.model) == model and scored and len(group) > len(chosen.get(config.objective, [])):
            chosen[config.objective] = group
    return list(chosen.values())


def row(label: str, fitted: str, cells: list[Cell], base: float | None, source: str, bar: str,
        fine_tuned: bool) -> Row:
    average = cells[-1]
    change = "-" if average is None or base is None else format_gain(average[0] - base)
    shown = ("-" if cell is None else format_score(*cell) for cell in cells)
    return Row((label, fitted, *shown, change, source), bar, average, fine_tuned)


def published_rows() -> list[tuple[str, ...]]:
    """bert-base-uncased's published post-processing rows (paper.py), which these machines cannot run."""
    rows = []
    for label, (citation, values) in paper.POSTPROCESSING_PUBLISHED.items():
        if len(values) != len(STS_COLUMNS):
            raise ValueError(f"paper.POSTPROCESSING_PUBLISHED[{label!r}]: {len(values)} values, one per "
                             f"{', '.join(STS_COLUMNS)} expected")
        rows.append((label, "published, not run here", *("-" if value is None else f"{value:.2f}" for value in values),
                     "-", paper.POSTPROCESSING_CITATIONS[citation]))
    return rows


def plot_averages(rows: list[Row], path: Path) -> bool:
    """The 7-task STS average of each row that scored it (raw, each post-processing, fine-tuned), as bars."""
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r.average is not None]
    if not shown:
        return False
    figure, axes = plt.subplots(figsize=(7, 0.8 + 0.4 * len(shown)))
    positions = range(len(shown))
    axes.barh(list(positions), [r.average[0] for r in shown], xerr=[r.average[1] or 0 for r in shown],
              capsize=3, color=[("tab:green" if r.fine_tuned else "tab:blue") for r in shown])
    for position, r in zip(positions, shown, strict=True):
        mean, std = r.average
        axes.text(mean + (std or 0) + 0.8, position, f"{mean:.2f}", va="center", fontsize=7)  # clear of the bar
    axes.set_yticks(list(positions), [r.bar for r in shown], fontsize=8)
    axes.invert_yaxis()  # rows in table order, top to bottom
    axes.set_xlim(0, 100)
    axes.set_xlabel("7-task STS average, Spearman x100")
    axes.set_title("Post-processing without training against fine-tuning", fontsize=9)
    return save_plot(figure, path)
