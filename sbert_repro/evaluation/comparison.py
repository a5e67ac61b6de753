"""`sbert-repro compare RUN_A RUN_B`: two runs' per-query scores (evaluation/run_files.py), paired query by query
on every task both scored, and scipy's paired t-test (ttest_rel) of the difference: is B's gain over A more than
the spread of queries would give by chance?"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from scipy.stats import ttest_rel

from sbert_repro.config.encoding import CompareConfig
from sbert_repro.errors import UsageError
from sbert_repro.evaluation.run_files import read_per_query


def compare_runs(run_a: Path, run_b: Path, metric: str) -> dict[str, Any]:
    """{"metric", "tasks": {task: {queries, mean_a, mean_b, difference, t, p_value}}} over the queries both runs
    scored (x100; the difference is B - A). A folder without per-query scores, or no task in common, is one line."""
    a, b = read_per_query(run_a, "RUN_A"), read_per_query(run_b, "RUN_B")
    common = [task for task in a if task in b]
    if not common:
        raise UsageError(f"compare: {run_a} scored {', '.join(a)} and {run_b} scored {', '.join(b)}: no task in "
                         "common to compare")
    tasks = {}
    for task in common:
        queries = [qid for qid in a[task] if qid in b[task]]
        if not queries or any(metric not in a[task][qid] or metric not in b[task][qid] for qid in queries):
            known = sorted(next(iter(a[task].values()), {}))
            raise UsageError(f"--metric {metric}: not in both runs' per-query scores of {task}; choose from "
                             f"{', '.join(known)}")
        first = [a[task][qid][metric] for qid in queries]
        second = [b[task][qid][metric] for qid in queries]
        differences = [y - x for x, y in zip(first, second, strict=True)]
        # Identical scores on every query have no spread: nothing to test, and scipy would give NaN.
        test = ttest_rel(second, first) if len(queries) > 1 and any(differences) else None
        tasks[task] = {"queries": len(queries), "mean_a": sum(first) / len(first), "mean_b": sum(second) / len(second),
                       "difference": sum(differences) / len(differences),
                       "t": float(test.statistic) if test is not None else None,
                       "p_value": float(test.pvalue) if test is not None else 1.0}
    return {"metric": metric, "tasks": tasks}


def comparison_table(comparison: dict[str, Any], config: CompareConfig) -> str:
    """task | queries | A | B | B - A | t | p (paired t-test), scores x100."""
    lines = [f"A: {config.run_a}; B: {config.run_b}; {comparison['metric']} x100 per query, paired t-test "
             "(scipy.stats.ttest_rel).", "", "| task | queries | A | B | B - A | t | p |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for task, row in comparison["tasks"].items():
        t = "-" if row["t"] is None or not math.isfinite(row["t"]) else f"{row['t']:.2f}"
        lines.append(f"| {task} | {row['queries']} | {row['mean_a']:.2f} | {row['mean_b']:.2f} | "
                     f"{row['difference']:+.2f} | {t} | {row['p_value']:.3g} |")
    return "\n".join(lines) + "\n"
