"""A run's scores in MTEB's result format, which mteb's tooling and its leaderboard read: one TaskResult JSON per
registry task scored (MTEB's task name and dataset revision, scores on a 0-1 scale, `main_score`,
`evaluation_time`), laid out as mteb's ResultCache keeps them:
<folder>/results/<organization>__<name>/<revision>/<TaskName>.json.

Written here rather than by mteb, because mteb writes results only for a model it scored itself, which needs the
hub (`evaluate --mteb` does that too, beside ours); these files hold the numbers the record holds. A task given as
a folder has no MTEB name and gets no file, nor does a retrieval task judged on another split than MTEB's, nor a run
whose scores are of post-processed vectors (not the model's own). No model_meta.json is written (mteb's needs the
hub's model card), so read them back with
`mteb.ResultCache(<folder>).load_results(require_model_meta=False, include_remote=False)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from sbert_repro.data.tasks import RETRIEVAL_TASKS, STS_TASKS
from sbert_repro.runs.paths import PACKAGED_MODELS, model_label
from sbert_repro.runs.records import write_json_atomic

# The result format followed (mteb 2's TaskResult), named where mteb itself is not installed to name its version.
FORMAT_VERSION = "2.0.0"
NO_REVISION = "no_revision_available"  # mteb's folder for a model without a revision
# Our retrieval metrics by the names mteb gives them.
RETRIEVAL_KEYS = {"ndcg@10": "ndcg_at_10", "mrr@10": "mrr_at_10", "map@100": "map_at_100",
                  "recall@1": "recall_at_1", "recall@10": "recall_at_10", "recall@100": "recall_at_100"}


def task_results(scores: Mapping[str, float], speeds: Mapping[str, float], retrieval_split: str | None = None
                 ) -> dict[str, dict]:
    """MTEB's TaskResult dicts, by MTEB task name, for each registry task in `scores` ({"task/metric": x100})
    scored on MTEB's split (a retrieval task judged on --retrieval-split `retrieval_split` gets none)."""
    results = {}
    for name, task in STS_TASKS.items():
        if f"{name}/spearman" in scores:
            spearman, pearson = scores[f"{name}/spearman"] / 100, scores[f"{name}/pearson"] / 100
            # the model's similarity is the cosine, so mteb's "spearman" is the cosine's too
            split = {"main_score": spearman, "cosine_spearman": spearman, "cosine_pearson": pearson,
                     "spearman": spearman, "pearson": pearson}
            results[task.mteb_name] = _result(task.mteb_name, task.mteb_revision or task.hub_revision, split,
                                              speeds.get(f"{name}/evaluation_s"))
    for name, task in RETRIEVAL_TASKS.items():
        if task.mteb_name and f"{name}/ndcg@10" in scores and retrieval_split in (None, task.split):
            split = {mteb_key: scores[f"{name}/{ours}"] / 100 for ours, mteb_key in RETRIEVAL_KEYS.items()
                     if f"{name}/{ours}" in scores}
            split["main_score"] = split["ndcg_at_10"]
            results[task.mteb_name] = _result(task.mteb_name, task.hub_revision, split,
                                              speeds.get(f"{name}/evaluation_s"))
    return results


def _result(task_name: str, revision: str | None, split: dict[str, float], seconds: float | None) -> dict:
    return {"dataset_revision": revision or "", "task_name": task_name, "mteb_version": _mteb_version(),
            "scores": {"test": [{**split, "hf_subset": "default", "languages": ["eng-Latn"]}]},
            "evaluation_time": seconds, "kg_co2_emissions": None,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_mteb_results(folder: Path, model: str, scores: Mapping[str, float], speeds: Mapping[str, float],
                       run_dir: Path, retrieval_split: str | None = None) -> list[str]:
    """The TaskResult files of `model`'s scores under folder (MTEB_FOLDER of a run); the files written, relative to
    `run_dir`, for the record."""
    revision_dir = folder / "results" / model_folder(model) / NO_REVISION
    written = []
    for task_name, result in task_results(scores, speeds, retrieval_split).items():
        revision_dir.mkdir(parents=True, exist_ok=True)
        path = revision_dir / f"{task_name}.json"
        write_json_atomic(path, result)
        written.append(str(path.relative_to(run_dir)))
    return written


def mteb_model_name(model: str) -> str:
    """--model as mteb names a model, organization/name, which names its results folder (organization__name): a
    hub id of that form as it is, a local folder or a bare hub id as sbert-repro/<its last part>. Unnamed (a model
    built from modules has no name of its own), mteb files the results under no_model_name__available."""
    if model.count("/") == 1 and not Path(model).expanduser().exists():
        return model
    return f"sbert-repro/{Path(model).expanduser().name or model}"


def model_folder(model: str) -> str:
    """The folder mteb keeps a model's results in: its name (mteb_model_name; a packaged model by its own name, not
    its folder's) with "/" as "__" and spaces as "_"."""
    label = model_label(model)
    return mteb_model_name(label if label in PACKAGED_MODELS.values() else model).replace("/", "__").replace(" ", "_")


def _mteb_version() -> str:
    try:
        return metadata.version("mteb")
    except metadata.PackageNotFoundError:
        return FORMAT_VERSION

