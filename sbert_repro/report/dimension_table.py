"""results/README.md's "Vectors cut to fewer dimensions" section: runs that scored their tasks with vectors cut to
their first d dimensions (`evaluate --dims`, `finetune --matryoshka-dims`), each dimension against the full size."""

from __future__ import annotations

import re
from typing import Any

from sbert_repro.report.prose import fill
from sbert_repro.report.record_groups import setting
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.records import RECORD

# The scores each row shows, by their key at the full size; "@d" goes after the task's name.
COLUMNS = (("stsb/spearman", "STSb Spearman"), ("sts-avg/spearman", "7-task STS avg"),
           ("scifact/ndcg@10", "SciFact nDCG@10"))
CUT = re.compile(r"^[^/@]+@(\d+)/")


def scored_dimensions(scores: dict[str, float]) -> list[int]:
    """The dimensions below the full size a set of scores holds, largest first."""
    return sorted({int(match.group(1)) for key in scores if (match := CUT.match(key))}, reverse=True)


def _cell(scores: dict[str, float], key: str, dim: int | None) -> str:
    task, metric = key.split("/")
    full = scores.get(key)
    value = full if dim is None else scores.get(f"{task}@{dim}/{metric}")
    if value is None or full is None:
        return "-"
    return f"{value:.2f}" if dim is None else f"{value:.2f} ({100 * value / full:.1f}%)"


def dimension_table(records: list[dict[str, Any]]) -> list[str]:
    """One row per scored dimension of each evaluate run (and each fine-tune's baseline) that has any."""
    rows = []
    for record in records:
        scored = record if record["kind"] == "evaluate" else record["baseline"]
        scores, speeds = scored["scores"], scored.get("speeds", {})
        dims = scored_dimensions(scores)
        if not dims or (record["kind"] != "evaluate" and record["config"]["seed"] != record["config"]["seeds"][0]):
            continue  # a fine-tune's baseline is the same for every seed: shown once
        what = "evaluate" if record["kind"] == "evaluate" else "baseline of a fine-tune"
        for dim in (None, *dims):
            size = speeds.get("scifact/bytes_per_vector" if dim is None else f"scifact@{dim}/bytes_per_vector")
            rows.append(f"| `{model_label(setting(record, 'model'))}` ({what}) | {dim or 'full'} | "
                        + " | ".join(_cell(scores, key, dim) for key, _ in COLUMNS)
                        + f" | {f'{size:.0f}' if size else '-'} | [record](records/{record['_path']}/{RECORD}) |")
    if not rows:
        return []
    return [fill("results", "dimensions"), "",
            "| model | dimensions | " + " | ".join(label for _, label in COLUMNS) + " | bytes per vector | source |",
            "|---|---:|" + "---:|" * len(COLUMNS) + "---:|---|", *rows]
