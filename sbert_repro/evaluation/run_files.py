"""What a retrieval task's search leaves beside the record, in the formats other tools read: a TREC run file
(`qid Q0 docid rank score tag`, each query's top 100 once its own id is dropped, as scored) and each judged
query's metrics (x100, JSON), whose mean is the recorded score. trec_eval, pytrec_eval, ranx and BEIR read the run
file; `sbert-repro compare` reads the per-query scores."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sbert_repro.errors import UsageError
from sbert_repro.runs.records import PER_QUERY_SUFFIX, RUN_FILES, TREC_SUFFIX, write_text_atomic

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskRun:
    """A retrieval task's search as scored: {qid: {doc_id: score}} and each judged query's metrics (x100)."""

    run: dict[str, dict[str, float]]
    per_query: dict[str, dict[str, float]]


def trec_tag(name: str) -> str:
    """A run tag without whitespace (trec_eval splits lines on it): the last part of a model path or hub id, with the
    run folder's (seed-42-model: a fine-tuned model is saved as <run>/seed-N/model, and "model" alone names none)."""
    parts = Path(name.rstrip("/\\")).parts
    keep = 1 if not parts or parts[-1] != "model" else 3 if len(parts) > 2 and parts[-2].startswith("seed-") else 2
    return re.sub(r"\s+", "-", "-".join(parts[-keep:]) or name) or "run"


def trec_lines(run: Mapping[str, Mapping[str, float]], tag: str) -> list[str]:
    """`qid Q0 docid rank score tag`, each query's documents in trec_eval's own order (score descending, ties by
    document id descending), so that rank and score agree; scores in full precision, so the file re-scores alike."""
    from sbert_repro.evaluation.metrics import trec_order  # pytrec_eval and scipy: not for preflight's checks

    lines = []
    for qid, scored in run.items():
        for rank, doc_id in enumerate(trec_order(scored), start=1):
            lines.append(f"{qid} Q0 {doc_id} {rank} {float(scored[doc_id])!r} {tag}")
    return lines


def read_trec(path: Path) -> dict[str, dict[str, float]]:
    """A TREC run file as {qid: {doc_id: score}}; a line without six fields is one error naming it."""
    run: dict[str, dict[str, float]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            qid, _, doc_id, _, score, _ = fields
            run.setdefault(qid, {})[doc_id] = float(score)
        except ValueError:
            raise UsageError(f"{path}:{number}: not a TREC run line (qid Q0 docid rank score tag)") from None
    return run


def write_task_runs(folder: Path, runs: Mapping[str, TaskRun], tag: str) -> dict[str, dict[str, str]]:
    """Each task's run file and per-query scores under folder/retrieval/; the files, relative to `folder`, for
    the record."""
    written = {}
    for task, task_run in runs.items():
        (folder / RUN_FILES).mkdir(parents=True, exist_ok=True)
        trec = Path(RUN_FILES) / f"{task}{TREC_SUFFIX}"
        per_query = Path(RUN_FILES) / f"{task}{PER_QUERY_SUFFIX}"
        spaced = spaced_id(task_run.run)
        if spaced is None:
            write_text_atomic(folder / trec, "".join(line + "\n" for line in trec_lines(task_run.run,
                                                                                         trec_tag(tag))))
        else:  # BEIR and pytrec_eval take any id; a TREC line cannot hold one with whitespace
            logger.warning("%s: an id with whitespace (%r) cannot be written as a TREC run line (trec_eval splits "
                           "on it), so %s is left out; the per-query scores are written", task, spaced, trec)
        write_text_atomic(folder / per_query, json.dumps({"task": task, "scale": "x100",
                                                          "queries": task_run.per_query}, indent=1) + "\n")
        written[task] = {**({"run": str(trec)} if spaced is None else {}), "per_query": str(per_query)}
    return written


def spaced_id(run: Mapping[str, Mapping[str, float]]) -> str | None:
    """The first query or document id of `run` holding whitespace (a space, a tab, a newline), or None."""
    for qid, scored in run.items():
        for name in (qid, *scored):
            if _WHITESPACE.search(name):
                return name
    return None


_WHITESPACE = re.compile(r"\s")


def per_query_files(folder: Path, option: str) -> list[Path]:
    """A run folder's per-query score files; a folder without them is one line naming `option`."""
    files = sorted((folder / RUN_FILES).glob(f"*{PER_QUERY_SUFFIX}")) if folder.is_dir() else []
    if not files:
        what = "no such folder" if not folder.is_dir() else f"no per-query scores ({RUN_FILES}/*{PER_QUERY_SUFFIX})"
        raise UsageError(f"{option} {folder}: {what}; give a run folder of a retrieval task scored by `evaluate`, "
                         "`finetune` (its fine-tuned model; the raw one's are in baseline/) or `bm25`")
    return files


def read_per_query(folder: Path, option: str) -> dict[str, dict[str, dict[str, float]]]:
    """{task: {qid: {metric: x100}}} of a run folder; a folder without them is one line naming `option`."""
    files = per_query_files(folder, option)
    tasks = {}
    for path in files:
        try:
            content: Any = json.loads(path.read_text(encoding="utf-8"))
            scored = {str(qid): {str(m): float(v) for m, v in scores.items()}
                      for qid, scores in content["queries"].items()}
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
            raise UsageError(f"{option}: {path} is not a per-query score file sbert-repro wrote; score the run "
                             "again") from None
        # JSON as Python reads it takes NaN and Infinity, which no test over queries can use
        for qid, scores in scored.items():
            for metric, value in scores.items():
                if not math.isfinite(value):
                    raise UsageError(f"{option}: {path}: query {qid!r} has {metric} {value}, not a score; score "
                                     "the run again")
        tasks[path.name[:-len(PER_QUERY_SUFFIX)]] = scored
    return tasks
