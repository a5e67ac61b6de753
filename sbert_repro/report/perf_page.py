"""results/perf.md: this project's speed against plain sentence-transformers, from benchmarks/perf.py's
records, and the whole reproduction's wall time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sbert_repro.config.training import TrainConfig
from sbert_repro.report.cost_table import render_cost
from sbert_repro.report.labels import commit_label, format_gain, format_score, minutes, provenance, short_model
from sbert_repro.report.markdown import SCORE_LABELS, STSB, markdown_table, record_link
from sbert_repro.report.plots import save_plot
from sbert_repro.report.prose import fill
from sbert_repro.report.record_groups import run_folders
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.record_parts import EncodePoint, PerfModel, TrainPoint
from sbert_repro.runs.records import EXAMPLE_RECIPE, FINETUNE_KIND, PLAIN_ENCODE
from sbert_repro.runs.schema import AnyRecord, CostRecord, FinetuneRecord, PerfRecord

REPRODUCTION_GOAL_MINUTES = 15
RECIPE = TrainConfig()  # finetune with no option given: the paper's Table 2 recipe, every task scored
# On one H100: the paper's epochs in under this many seconds, at this multiple of the example recipe's samples/s.
GPU_GOAL_SECONDS, GPU_GOAL_SPEEDUP = 60, 1.5


def is_full_reproduction(record: AnyRecord) -> bool:
    """A fine-tune of the whole Table 2 recipe: STSb 4 epochs on all pairs, every task scored before and after
    (Matryoshka, a loss per dimension, is not the paper's recipe)."""
    return (record.kind == FINETUNE_KIND and not record.config.matryoshka_dims
            and all(getattr(record.config, name) == getattr(RECIPE, name)
                    for name in ("objective", "epochs", "max_train_samples"))
            and len(record.config.sts_tasks) == len(RECIPE.sts_tasks)
            and set(record.config.retrieval_tasks) >= set(RECIPE.retrieval_tasks))


def render_perf(benchmarks: list[PerfRecord], finetunes: list[FinetuneRecord], plots_dir: Path | None,
                cost: list[CostRecord] | None = None) -> str:
    """results/perf.md: encode and training speed against plain sentence-transformers on each CPU and GPU measured
    (or that no GPU was), the whole reproduction's wall time, and (with `cost`, benchmarks/cost.py's records) the
    cross-encoder's cost against the bi-encoder's."""
    lines = [fill("perf", "intro"), ""]
    for record in benchmarks:
        if not on_gpu(record):
            lines += cpu_section(record, plots_dir)
    gpu = [record for record in benchmarks if on_gpu(record)]
    for record in gpu:
        lines += gpu_section(record)
    if not gpu:
        lines += [fill("perf", "gpu-none", **gpu_goal()), ""]
    return "\n".join([*lines, *reproduction_table(finetunes), "", *(render_cost(cost, plots_dir) if cost else ())])


def on_gpu(record: PerfRecord) -> bool:
    return record.environment.hardware.device.startswith("cuda")


def gpu_goal() -> dict[str, object]:
    return {"paper_epochs": RECIPE.epochs, "goal_seconds": GPU_GOAL_SECONDS, "goal_speedup": GPU_GOAL_SPEEDUP}


def cpu_section(record: PerfRecord, plots_dir: Path | None) -> list[str]:
    environment, peaks, first = record.environment, record.matmul_gflops, record.models[0].train[0]
    lines = [fill("perf", "benchmark", **provenance(record), torch_version=environment.version("torch"),
                  threads=record.torch_threads, st_version=environment.version("sentence-transformers"),
                  took=minutes(record.wall_seconds), fp32_gflops=f"{peaks.fp32:,.0f}",
                  bf16_gflops=f"{peaks.bf16:,.0f}", batch_size=record.config.encode_batch_size), "",
             *markdown_table(("model", "data", "variant", "sentences/s", "vs plain", "useful GFLOP/s",
                              "share of fp32 peak", SCORE_LABELS[STSB], "change"), encode_rows(record), "lllrrrrrr"),
             "", fill("perf", "training", batch_size=first.batch_size, max_seq_length=first.max_seq_length), "",
             *markdown_table(("model", "variant", "steps/s", "samples/s", "vs example recipe", "peak memory"),
                             train_rows(record), "llrrrr")]
    name = f"speedups-{run_folders([record])[0]}.png"  # what it shows, for which benchmark run
    if plots_dir is not None and plot_speedups(record, plots_dir / name):
        lines += ("", f"![speed-ups](plots/{name})")
    return [*lines, ""]


def encode_rows(record: PerfRecord, gpu: bool = False) -> list[tuple[str, ...]]:
    """One row per model, data and variant: speed against plain sentence-transformers, and what it cost (`gpu`: with
    each variant's dtype and peak GPU memory)."""
    rows = []
    for model in record.models:
        for data, points in by_data(model).items():
            plain, speedups = next(point for point in points if point.variant == PLAIN_ENCODE), encode_speedups(points)
            for point in points:
                spearman = point.stsb_spearman
                cells = (model.model, data, point.variant, f"{point.sentences_per_s:,.1f}",
                         f"{speedups[point.variant]:.2f}x", f"{point.gflops:,.0f}",
                         f"{100 * point.share_of_fp32_peak:.0f}%",
                         "-" if spearman is None else format_score(spearman),
                         "" if spearman is None or point is plain else format_gain(spearman - plain.stsb_spearman))
                rows.append((*cells[:3], point.dtype or "-", *cells[3:7], gpu_memory(point), *cells[7:]) if gpu
                            else cells)
    return rows


def train_rows(record: PerfRecord) -> list[tuple[str, ...]]:
    rows = []
    for model in record.models:
        example = recipe_speeds(model)["fp32"]
        rows += [(model.model, variant_label(point), f"{point.steps_per_s:.2f}", f"{point.samples_per_s:.1f}",
                  f"{point.samples_per_s / example:.2f}x", f"{point.peak_rss_mib:,.0f} MiB") for point in model.train]
    return rows


def variant_label(point: TrainPoint) -> str:
    return point.variant + (", torch.compile" if point.compiled else "") + (" (again, after ours)" if point.repeat
                                                                            else "")


def gpu_memory(point: EncodePoint | TrainPoint) -> str:
    """Peak GPU memory, allocated / reserved."""
    if point.peak_gpu_allocated_mib is None or point.peak_gpu_reserved_mib is None:
        return "-"
    return f"{point.peak_gpu_allocated_mib:,.0f} / {point.peak_gpu_reserved_mib:,.0f} MiB"


def _cell(value: float | None, form: str | Callable[[float], str]) -> str:
    """`value` as `form` (a format string, or a function) gives it; "-" where the record does not hold it."""
    if value is None:
        return "-"
    return form.format(value) if isinstance(form, str) else form(value)


def gpu_section(record: PerfRecord) -> list[str]:
    """A GPU benchmark: what it ran on and how fp32 computed, encoding, training, and the goal's numbers."""
    environment, hardware, peaks = record.environment, record.environment.hardware, record.matmul_gflops
    settings, first = record.matmul_settings, record.models[0].train[0]
    lines = [fill("perf", "gpu-benchmark", **provenance(record), capability=hardware.gpu_capability or "?",
                  cuda=hardware.cuda or "?", torch_version=environment.version("torch"),
                  st_version=environment.version("sentence-transformers"),
                  took="?" if record.wall_seconds is None else minutes(record.wall_seconds),
                  fp32_mode="?" if settings is None else "TF32" if settings.cuda_matmul_allow_tf32 else "full fp32",
                  matmul_precision=settings.float32_matmul_precision if settings else "?",
                  fp32_gflops=f"{peaks.fp32:,.0f}", bf16_gflops=_cell(peaks.bf16, "{:,.0f}"),
                  fp16_gflops=_cell(peaks.fp16, "{:,.0f}"),
                  batch_size=record.config.encode_batch_size), "",
             *markdown_table(("model", "data", "variant", "dtype", "sentences/s", "vs plain", "useful GFLOP/s",
                              "share of fp32 peak", "peak GPU memory", SCORE_LABELS[STSB], "change"),
                             encode_rows(record, gpu=True), "llllrrrrrrr"),
             "", fill("perf", "gpu-training", batch_size=first.batch_size, max_seq_length=first.max_seq_length), "",
             *markdown_table(("model", "variant", "dtype", "epochs", "steps", "train time", "steps/s", "samples/s",
                              "vs recipe", "peak GPU memory", "peak resident", "STSb validation Spearman"),
                             gpu_train_rows(record), "lllrrrrrrrrr")]
    goals = [goal_line(model) for model in record.models]
    return [*lines, *(line for goal in goals if goal for line in ("", goal)), ""]



def gpu_train_rows(record: PerfRecord) -> list[tuple[str, ...]]:
    """One row per model and training variant; *vs recipe*: over the recipe's mean samples/s in the same dtype."""
    rows = []
    for model in record.models:
        recipes = recipe_speeds(model)
        for point in model.train:
            recipe = recipes.get(point.dtype or "fp32")
            rows.append((model.model, variant_label(point), point.dtype or "-", _cell(point.epochs, "{:g}"),
                         _cell(point.steps, "{:,}"), _cell(point.train_seconds, "{:.1f} s"),
                         f"{point.steps_per_s:.2f}", f"{point.samples_per_s:.1f}",
                         "-" if recipe is None else f"{point.samples_per_s / recipe:.2f}x", gpu_memory(point),
                         _cell(point.peak_rss_mib, "{:,.0f} MiB"), _cell(point.stsb_validation_spearman,
                                                                          format_score)))
    return rows





def goal_line(model: PerfModel) -> str | None:
    """The goal's numbers for one model: the fastest of ours against the fastest recipe, in samples/s, each with its
    training time and Spearman; None where a side lacks them (a run capped by steps is not scored)."""
    def fastest(points: list[TrainPoint]) -> TrainPoint | None:
        scored = [point for point in points if point.train_seconds is not None
                  and point.stsb_validation_spearman is not None]
        return max(scored, key=lambda point: point.samples_per_s, default=None)

    ours = fastest([point for point in model.train if not is_recipe(point)])
    recipe = fastest([point for point in model.train if is_recipe(point)])
    if ours is None or recipe is None:
        return None
    return fill("perf", "gpu-goal", **gpu_goal(), model=model.model, ours=variant_label(ours),
                epochs=_cell(ours.epochs, "{:g}"), ours_seconds=_cell(ours.train_seconds, "{:.1f} s"),
                speedup=f"{ours.samples_per_s / recipe.samples_per_s:.2f}", recipe=variant_label(recipe),
                recipe_seconds=_cell(recipe.train_seconds, "{:.1f} s"),
                ours_spearman=_cell(ours.stsb_validation_spearman, format_score),
                recipe_spearman=_cell(recipe.stsb_validation_spearman, format_score))


def reproduction_table(finetunes: list[FinetuneRecord]) -> list[str]:
    rows = []
    for record in finetunes:
        timings, total = record.timings, minutes(record.timings.total_s)
        rows.append((record_link(record, record.path), model_label(record.config.model), record.config.precision,
                     "length-grouped" if record.config.group_by_length else "random",
                     minutes(timings.baseline_eval_s), minutes(timings.train_s), minutes(timings.finetuned_eval_s),
                     f"**{total}**" if timings.total_s < 60 * REPRODUCTION_GOAL_MINUTES else total,
                     format_score(record.finetuned.score(STSB)), commit_label(record.environment.git)))
    return [fill("perf", "reproduction", goal_minutes=REPRODUCTION_GOAL_MINUTES), "", *markdown_table(
        ("run", "model", "precision", "batches", "baseline eval", "train", "fine-tuned eval", "total",
         SCORE_LABELS[STSB], "git"), rows, "llllrrrrrl")]


def by_data(model: PerfModel) -> dict[str, list[EncodePoint]]:
    """The model's encoding points by the data they encoded, in the record's order."""
    return {data: [point for point in model.encode if point.data == data]
            for data in dict.fromkeys(point.data for point in model.encode)}


def encode_speedups(points: list[EncodePoint]) -> dict[str, float]:
    """Each variant's sentences/s over plain sentence-transformers', by variant name."""
    plain = next(point for point in points if point.variant == PLAIN_ENCODE).sentences_per_s
    return {point.variant: point.sentences_per_s / plain for point in points}


def is_recipe(point: TrainPoint) -> bool:
    """The sentence-transformers example recipe ("example recipe", "example recipe fp16"), in any dtype."""
    return point.variant == EXAMPLE_RECIPE or point.variant.startswith(f"{EXAMPLE_RECIPE} ")


def recipe_speeds(model: PerfModel) -> dict[str, float]:
    """The example recipe's samples/s by dtype, the mean of its runs (before and after ours); a record that names no
    dtype ran the recipe in fp32."""
    runs: dict[str, list[float]] = {}
    for point in model.train:
        if is_recipe(point):
            runs.setdefault(point.dtype or "fp32", []).append(point.samples_per_s)
    return {dtype: float(np.mean(speeds)) for dtype, speeds in runs.items()}


def train_speedups(model: PerfModel) -> dict[str, float]:
    """Each variant's training samples/s over the sentence-transformers example recipe's in fp32, by variant name
    (a variant run twice by its last run)."""
    example = recipe_speeds(model)["fp32"]
    return {point.variant: point.samples_per_s / example for point in model.train}


def plot_speedups(record: PerfRecord, path: Path) -> bool:
    """Encoding speed over plain sentence-transformers, and training speed over the example recipe."""
    import matplotlib.pyplot as plt

    figure, (encoding, training) = plt.subplots(1, 2, figsize=(13, 4.8), width_ratios=(2, 1))
    _speedup_bars(encoding, {f"{short_model(model.model)}\n{data.split(' (')[0]}": encode_speedups(points)
                             for model in record.models for data, points in by_data(model).items()},
                  "sentences/s over plain sentence-transformers", "encoding")
    _speedup_bars(training, {short_model(model.model): train_speedups(model) for model in record.models},
                  "samples/s over the sentence-transformers example",
                  f"training, {record.environment.hardware.cpu_cores} CPU cores")
    return save_plot(figure, path)


def _speedup_bars(axes: Any, groups: dict[str, dict[str, float]], ylabel: str, title: str) -> None:
    """One bar per variant in each group (a variant a group lacks is left out), 1.0 dashed."""
    variants = list(dict.fromkeys(variant for speedups in groups.values() for variant in speedups))
    width = 0.8 / len(variants)
    for offset, variant in enumerate(variants):
        axes.bar(np.arange(len(groups)) + offset * width,
                 [speedups.get(variant, float("nan")) for speedups in groups.values()], width, label=variant)
    # A long model name ("bert-base-uncased shape, random weights") wraps at its comma, so that labels never overlap.
    axes.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, [name.replace(", ", ",\n") for name in groups],
                    fontsize=7)
    axes.set_ylabel(ylabel)
    axes.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    axes.set_ylim(0, axes.get_ylim()[1] * 1.4)  # room for the legend above the bars
    axes.legend(fontsize=7, loc="upper left")
    axes.set_title(title, fontsize=9)
