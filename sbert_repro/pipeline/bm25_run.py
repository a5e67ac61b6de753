"""`sbert-repro bm25`: BM25 on the retrieval tasks, the reference row beside the raw and fine-tuned models; and
`sbert-repro compare`: two runs' per-query scores, paired."""

from __future__ import annotations

import time
from typing import Any

from sbert_repro.config.encoding import BM25Config, CompareConfig
from sbert_repro.data.loaders import data_checks, load_eval_sets
from sbert_repro.evaluation.bm25 import score_bm25
from sbert_repro.evaluation.comparison import compare_runs, comparison_table
from sbert_repro.evaluation.run_files import TaskRun, write_task_runs
from sbert_repro.report.gain_table import scores_table_markdown
from sbert_repro.report.labels import data_label
from sbert_repro.runs import progress
from sbert_repro.runs.environment import environment
from sbert_repro.runs.records import BM25_KIND, check_run_dir, open_run_dir, write_record, write_text_atomic


def bm25(config: BM25Config) -> dict[str, Any]:
    """Score BM25 on the configured retrieval tasks; write record.json, scores.md and each task's run files."""
    started = time.perf_counter()
    run_environment = environment("cpu")  # bm25s runs on the CPU
    progress.stage("loading the data")
    _, retrieval_sets = load_eval_sets((), config.retrieval_tasks, config.data_dir, config.retrieval_split)
    check_run_dir(config.output_dir, overwrite=config.overwrite, kind=BM25_KIND)
    with open_run_dir(config.output_dir, overwrite=config.overwrite, staged=True, kind=BM25_KIND) as run_dir:
        progress.stage("scoring BM25")
        runs: dict[str, TaskRun] = {}
        scores, speeds = score_bm25(retrieval_sets, config, runs)
        record = {
            "kind": BM25_KIND,
            "config": config.to_dict(),
            "environment": run_environment,
            "data": {name: data.source for name, data in retrieval_sets.items()},
            "data_checks": data_checks(retrieval_sets),
            "scores": scores,
            "speeds": speeds,
            "retrieval_files": write_task_runs(run_dir, runs, BM25_KIND),
            "wall_seconds": time.perf_counter() - started,
        }
        table = scores_table_markdown(scores, f"BM25 (bm25s, {config.method}, k1 {config.k1:g}, b {config.b:g})",
                                      data_label(config.data_dir, record["data"].values()))
        write_text_atomic(run_dir / "scores.md", table)
        write_record(run_dir / "record.json", record)
    print(progress.terminal_lines(table))
    return record


def compare(config: CompareConfig) -> dict[str, Any]:
    """Print, per task both runs scored, the mean difference B - A of `config.metric` over the paired queries and
    the paired t-test's p-value; return them."""
    comparison = compare_runs(config.run_a, config.run_b, config.metric)
    print(progress.terminal_lines(comparison_table(comparison, config)))
    return comparison
