"""results/README.md's "Vectors cut to fewer dimensions" section: runs that scored their tasks with vectors cut to
their first d dimensions (`evaluate --dims`, `finetune --matryoshka-dims`), each dimension against the full size."""

from __future__ import annotations

import re
from typing import Any

from sbert_repro.data.tasks import HEADLINE_RETRIEVAL_TASK
from sbert_repro.report.markdown import SCORE_LABELS, SEARCH, STS_AVG, STSB, markdown_table, record_link
from sbert_repro.report.prose import fill
from sbert_repro.report.record_groups import setting
from sbert_repro.runs.paths import model_label

# The scores each row shows, by their key at the full size; "@d" goes after the task's name.
COLUMNS = (STSB, STS_AVG, SEARCH)
CUT = re.compile(r"^[^/@]+@(\d+)/")


def scored_dimensions(scores: dict[str, float]) -> list[int]:
    """The dimensions below the full size a set of scores holds, largest first."""
    return sorted({int(match.group(1)) for key in scores if (match := CUT.match(key))}, reverse=True)


def at(key: str, dim: int | None) -> str:
    """'stsb/spearman' at 128 dimensions: 'stsb@128/spearman'; at the full size (None) the key itself."""
    task, metric = key.split("/")
    return key if dim is None else f"{task}@{dim}/{metric}"


def _cell(scores: dict[str, float], key: str, dim: int | None) -> str:
    full, value = scores.get(key), scores.get(at(key, dim))
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
            size = speeds.get(at(f"{HEADLINE_RETRIEVAL_TASK}/bytes_per_vector", dim))
            rows.append((f"`{model_label(setting(record, 'model'))}` ({what})", str(dim or "full"),
                         *(_cell(scores, key, dim) for key in COLUMNS), f"{size:.0f}" if size else "-",
                         record_link(record)))
    if not rows:
        return []
    return [fill("results", "dimensions"), "",
            *markdown_table(("model", "dimensions", *(SCORE_LABELS[key] for key in COLUMNS), "bytes per vector",
                             "source"), rows, "lr" + "r" * len(COLUMNS) + "rl")]
