"""results/perf.md: this project's speed against plain sentence-transformers, from benchmarks/perf.py's
records, and the whole reproduction's wall time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sbert_repro.data.tasks import DEFAULT_RETRIEVAL_TASKS, TABLE1_STS_TASKS
from sbert_repro.report.cost_table import render_cost
from sbert_repro.report.labels import commit_label, format_gain, format_score, minutes, provenance, short_model
from sbert_repro.report.markdown import SCORE_LABELS, STSB, markdown_table, record_link
from sbert_repro.report.plots import save_plot
from sbert_repro.report.prose import fill
from sbert_repro.report.record_groups import run_folders, setting
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.records import EXAMPLE_RECIPE, PLAIN_ENCODE

REPRODUCTION_GOAL_MINUTES = 15


def is_full_reproduction(record: dict[str, Any]) -> bool:
    """A fine-tune of the whole Table 2 recipe: STSb 4 epochs on all pairs, every task scored before and after."""
    return (record["kind"] == "finetune" and setting(record, "objective") == "sts-cosine"
            and not setting(record, "matryoshka_dims")  # Matryoshka: a loss per dimension, not the paper's recipe
            and setting(record, "epochs") == 4 and setting(record, "max_train_samples") is None
            and len(setting(record, "sts_tasks")) == len(TABLE1_STS_TASKS)
            and set(setting(record, "retrieval_tasks")) >= set(DEFAULT_RETRIEVAL_TASKS))


def render_perf(benchmarks: list[dict[str, Any]], finetunes: list[dict[str, Any]], plots_dir: Path | None,
                cost: list[dict[str, Any]] | None = None) -> str:
    """results/perf.md: encode and training speed against plain sentence-transformers, the whole reproduction's wall
    time, and (with `cost`, benchmarks/cost.py's records) the cross-encoder's cost against the bi-encoder's."""
    lines = [fill("perf", "intro"), ""]
    for record in benchmarks:
        peaks, packages = record["matmul_gflops"], record["environment"]["packages"]
        lines += [fill("perf", "benchmark", **provenance(record), torch_version=packages.get("torch"),
                       threads=record["torch_threads"], st_version=packages.get("sentence-transformers"),
                       took=minutes(record["wall_seconds"]), fp32_gflops=f"{peaks['fp32']:,.0f}",
                       bf16_gflops=f"{peaks['bf16']:,.0f}", batch_size=record["config"]["encode_batch_size"]), "",
                  *markdown_table(("model", "data", "variant", "sentences/s", "vs plain", "useful GFLOP/s",
                                   "share of fp32 peak", SCORE_LABELS[STSB], "change"), _encode_rows(record),
                                  "lllrrrrrr")]
        first = record["models"][0]["train"][0]
        lines += ["", fill("perf", "training", batch_size=first["batch_size"], max_seq_length=first["max_seq_length"]),
                  "", *markdown_table(("model", "variant", "steps/s", "samples/s", "vs example recipe", "peak memory"),
                                      _train_rows(record), "llrrrr")]
        name = f"speedups-{run_folders([record])[0]}.png"  # what it shows, for which benchmark run
        if plots_dir is not None and plot_speedups(record, plots_dir / name):
            lines += ["", f"![speed-ups](plots/{name})"]
        lines.append("")
    lines += _reproduction_table(finetunes) + [""]
    if cost:
        lines += render_cost(cost, plots_dir)
    return "\n".join(lines)


def _encode_rows(record: dict[str, Any]) -> list[tuple[str, ...]]:
    """One row per model, data and variant: speed against plain sentence-transformers, and what it cost."""
    rows = []
    for model in record["models"]:
        for data in dict.fromkeys(point["data"] for point in model["encode"]):
            points = [point for point in model["encode"] if point["data"] == data]
            plain = next(point for point in points if point["variant"] == PLAIN_ENCODE)
            speedups = speedups_over(points, PLAIN_ENCODE, "sentences_per_s")
            for point in points:
                spearman = point.get("stsb_spearman")
                change = (format_gain(spearman - plain["stsb_spearman"])
                          if spearman is not None and point is not plain else "")
                rows.append((model["model"], data, point["variant"], f"{point['sentences_per_s']:,.1f}",
                             f"{speedups[point['variant']]:.2f}x", f"{point['gflops']:,.0f}",
                             f"{100 * point['share_of_fp32_peak']:.0f}%",
                             format_score(spearman) if spearman is not None else "-", change))
    return rows


def _train_rows(record: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = []
    for model in record["models"]:
        speedups = speedups_over(model["train"], EXAMPLE_RECIPE, "samples_per_s")
        rows += [(model["model"], point["variant"], f"{point['steps_per_s']:.2f}", f"{point['samples_per_s']:.1f}",
                  f"{speedups[point['variant']]:.2f}x", f"{point['peak_rss_mib']:,.0f} MiB")
                 for point in model["train"]]
    return rows


def _reproduction_table(finetunes: list[dict[str, Any]]) -> list[str]:
    rows = []
    for record in finetunes:
        timings = record["timings"]
        total = minutes(timings["total_s"])
        rows.append((record_link(record, record["_path"]), model_label(record["config"]["model"]),
                     setting(record, "precision"), "length-grouped" if setting(record, "group_by_length") else "random",
                     minutes(timings["baseline_eval_s"]), minutes(timings["train_s"]),
                     minutes(timings["finetuned_eval_s"]),
                     f"**{total}**" if timings["total_s"] < 60 * REPRODUCTION_GOAL_MINUTES else total,
                     format_score(record["finetuned"]["scores"][STSB]), commit_label(record["environment"]["git"])))
    return [fill("perf", "reproduction", goal_minutes=REPRODUCTION_GOAL_MINUTES), "", *markdown_table(
        ("run", "model", "precision", "batches", "baseline eval", "train", "fine-tuned eval", "total",
         SCORE_LABELS[STSB], "git"), rows, "llllrrrrrl")]


def speedups_over(points: list[dict[str, Any]], reference: str, key: str) -> dict[str, float]:
    """Each variant's `key` (a speed) over the reference variant's, by variant name."""
    base = next(point for point in points if point["variant"] == reference)[key]
    return {point["variant"]: point[key] / base for point in points}


def plot_speedups(record: dict[str, Any], path: Path) -> bool:
    """Encoding speed over plain sentence-transformers, and training speed over the example recipe."""
    import matplotlib.pyplot as plt

    figure, (encoding, training) = plt.subplots(1, 2, figsize=(13, 4.8), width_ratios=(2, 1))
    encode_groups = {f"{short_model(model['model'])}\n{data.split(' (')[0]}":
                     speedups_over([p for p in model["encode"] if p["data"] == data], PLAIN_ENCODE, "sentences_per_s")
                     for model in record["models"] for data in dict.fromkeys(p["data"] for p in model["encode"])}
    _speedup_bars(encoding, encode_groups, "sentences/s over plain sentence-transformers", "encoding")
    train_groups = {short_model(model["model"]): speedups_over(model["train"], EXAMPLE_RECIPE, "samples_per_s")
                    for model in record["models"]}
    _speedup_bars(training, train_groups, "samples/s over the sentence-transformers example",
                  f"training, {record['environment']['hardware']['cpu_cores']} CPU cores")
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
