"""results/README.md's "Vectors cut to fewer dimensions" section: runs that scored their tasks with vectors cut to
their first d dimensions (`evaluate --dims`, `finetune --matryoshka-dims`), each dimension against the full size."""

from __future__ import annotations

import re

from sbert_repro.report.markdown import SCORE_LABELS, SEARCH, STS_AVG, STSB, markdown_table, record_link
from sbert_repro.report.prose import fill
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.record_parts import Scored
from sbert_repro.runs.schema import EvaluateRecord, FinetuneRecord

# The scores each row shows, by their key at the full size; "@d" goes after the task's name.
COLUMNS = (STSB, STS_AVG, SEARCH)
CUT = re.compile(r"^[^/@]+@(\d+)/")


def raw_scores(record: FinetuneRecord | EvaluateRecord) -> Scored:
    """What a record scored of a model before any training: an evaluation's scores, a fine-tune's baseline."""
    return record if isinstance(record, Scored) else record.baseline


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


def _cell(scored: Scored, key: str, dim: int | None) -> str:
    full, value = scored.score(key), scored.score(at(key, dim))
    if value is None or full is None:
        return "-"
    return f"{value:.2f}" if dim is None else f"{value:.2f} ({100 * value / full:.1f}%)"


def dimension_table(records: list[FinetuneRecord | EvaluateRecord]) -> list[str]:
    """One row per scored dimension of each evaluate run (and each fine-tune's baseline) that has any."""
    rows = []
    for record in records:
        scored = raw_scores(record)
        dims = scored_dimensions(scored.scores)
        finetune = isinstance(record, FinetuneRecord)
        if not dims or (finetune and record.config.seed != record.config.seeds[0]):
            continue  # a fine-tune's baseline is the same for every seed: shown once
        what = "baseline of a fine-tune" if finetune else "evaluate"
        rows += [(f"`{model_label(record.config.model)}` ({what})", str(dim or "full"),
                  *(_cell(scored, key, dim) for key in COLUMNS), bytes_per_vector(scored, dim), record_link(record))
                 for dim in (None, *dims)]
    if not rows:
        return []
    return [fill("results", "dimensions"), "",
            *markdown_table(("model", "dimensions", *(SCORE_LABELS[key] for key in COLUMNS), "bytes per vector",
                             "source"), rows, "lr" + "r" * len(COLUMNS) + "rl")]
