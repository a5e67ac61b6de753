"""Checks a command makes before any model work: the hub datasets its configuration reads are reachable or cached."""

from __future__ import annotations

from pathlib import Path

from sbert_repro.config.encoding import EvaluateConfig, GeometryConfig
from sbert_repro.config.indexing import IndexConfig, SearchConfig
from sbert_repro.config.objectives import NLI_DATA, get_objective
from sbert_repro.config.training import TrainConfig
from sbert_repro.data.hub import hub_datasets, stay_offline_if_hub_unreachable, uncached_hub_datasets
from sbert_repro.data.tasks import TRAIN_TASK
from sbert_repro.errors import UsageError


def check_hub_data(config: EvaluateConfig | TrainConfig | IndexConfig | SearchConfig | GeometryConfig) -> None:
    """Ask once, before the Hugging Face libraries are imported (seconds), whether the hub answers. If not, they
    are put offline, to read their caches at once instead of retrying each download for half a minute, and a
    run that needs hub data the cache does not hold stops here, in one line."""
    if not isinstance(config, (EvaluateConfig, TrainConfig, IndexConfig, GeometryConfig)):
        return
    hub_data = not isinstance(config, IndexConfig) and config.data_dir is None
    models = config.models if isinstance(config, GeometryConfig) else (config.model,)
    if not hub_data and all(Path(model).expanduser().exists() for model in models):
        return
    reason = stay_offline_if_hub_unreachable()
    if reason is None or not hub_data:
        return
    trains_on = get_objective(config.objective).trains_on if isinstance(config, TrainConfig) else ()
    # finetune trains and validates on STSb, or on --train-task's judgements; geometry reads STSb test's gold pairs
    on_judgements = "retrieval-judgements" in trains_on
    sts_tasks = config.sts_tasks + ((TRAIN_TASK,) if isinstance(config, GeometryConfig) or
                                    (isinstance(config, TrainConfig) and not on_judgements) else ())
    nli_task = config.nli_task if set(NLI_DATA) & set(trains_on) else None
    train_tasks = (config.train_task,) if on_judgements else ()
    retrieval_tasks = () if isinstance(config, GeometryConfig) else config.retrieval_tasks
    missing = uncached_hub_datasets(hub_datasets(sts_tasks, retrieval_tasks + train_tasks, nli_task))
    if missing:
        raise UsageError(f"cannot load {missing[0]} from the Hugging Face hub ({reason}; not in the local cache "
                         "either); offline, pass --data-dir DIR with local copies laid out as ../shared/data")
