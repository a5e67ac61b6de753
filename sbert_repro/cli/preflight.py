"""Checks a command makes before any model work, and before the heavy imports (torch, sentence-transformers: seconds):
the paths it names exist and hold what it reads, its --index string parses, and the hub datasets its configuration
reads are reachable or cached. Each check here is repeated where the work is done (a config built in Python skips
the command line); here it only fails sooner."""

from __future__ import annotations

from pathlib import Path

from sbert_repro.config.checks import EXACT_INDEX
from sbert_repro.config.encoding import CompareConfig, EvaluateConfig, GeometryConfig
from sbert_repro.config.indexing import IndexConfig, SearchConfig
from sbert_repro.config.objectives import NLI_DATA, get_objective
from sbert_repro.config.training import TrainConfig
from sbert_repro.data.hub import hub_datasets, stay_offline_if_hub_unreachable, uncached_hub_datasets
from sbert_repro.data.loaders import in_data_dir
from sbert_repro.data.tasks import NLI_TASKS, STS_TASKS, TRAIN_TASK, retrieval_task
from sbert_repro.errors import UsageError
from sbert_repro.evaluation.run_files import per_query_files
from sbert_repro.runs.folders import interrupted_swap_hint
from sbert_repro.runs.paths import looks_like_folder


def check_paths(config: object) -> None:
    """The folders and files the command names, in one line each, in well under a second."""
    data_dir = getattr(config, "data_dir", None)
    if data_dir is not None and not Path(data_dir).is_dir():
        raise UsageError(f"--data-dir {data_dir}: no such folder; give a folder laid out as ../shared/data, or leave "
                         "--data-dir out to read the Hugging Face hub")
    for model in getattr(config, "models", ()) or (getattr(config, "model", None),):
        if model and looks_like_folder(model) and not Path(model).expanduser().exists():
            raise UsageError(f"--model {model}: no such folder; give a model folder or a hub name (org/name)"
                             + next(filter(None, (interrupted_swap_hint(folder) for folder in
                                                  Path(model).expanduser().absolute().parents if folder.name)), ""))
    if data_dir is not None:
        for task in getattr(config, "sts_tasks", None) or ():
            in_data_dir(data_dir, STS_TASKS[task].local_dir, "test.jsonl")
    for spec in getattr(config, "retrieval_tasks", None) or ():
        task = retrieval_task(spec)
        if task.folder is not None and not (task.folder / "corpus.jsonl").is_file():
            raise UsageError(f"--retrieval-tasks {spec}: no corpus.jsonl there; give a folder in BEIR layout")
        if task.folder is None and task.derived_from is None and data_dir is not None and task.local_dir:
            in_data_dir(data_dir, task.local_dir, "corpus.jsonl")
    if isinstance(config, TrainConfig) and data_dir is not None and set(NLI_DATA) & set(
            get_objective(config.objective).trains_on):
        nli_task = NLI_TASKS[config.nli_task]
        if config.nli_split in nli_task.splits:  # another split: the loader's line names the task's splits
            in_data_dir(data_dir, nli_task.local_dir, f"{config.nli_split}.jsonl")
    if isinstance(config, IndexConfig) and config.corpus is not None and not config.corpus.exists():
        raise UsageError(f"--corpus {config.corpus}: no such file or folder")
    if isinstance(config, (EvaluateConfig, IndexConfig)) and config.index != EXACT_INDEX:
        _check_index_string(config.index)
    queries_file = getattr(config, "queries_file", None)
    if queries_file is not None and str(queries_file) != "-" and not queries_file.is_file():
        raise UsageError(f"--queries-file {queries_file}: no such file; give a file of queries (one a line, or BEIR "
                         "queries JSONL), or - for standard input")
    if isinstance(config, SearchConfig) and not (config.index_dir / "index.json").is_file():
        raise UsageError(f"--index-dir {config.index_dir}: no finished index there (index.json); build one with "
                         "`sbert-repro index`" + interrupted_swap_hint(config.index_dir))
    if isinstance(config, CompareConfig):
        per_query_files(config.run_a, "RUN_A")
        per_query_files(config.run_b, "RUN_B")


# Models' dimensions: a string is judged on its syntax, refused only where no dimension takes it (whether it fits the
# model's own is checked once the model is loaded): PQ512 needs 1024 or more, PQ24 768, PQ40 3840.
_DIMENSIONS = (768, 1024, 3840, 4096)


def _check_index_string(factory: str) -> None:
    from sbert_repro.search.faiss_index import empty_index  # faiss: a tenth of a second

    for dim in _DIMENSIONS[:-1]:
        try:
            empty_index(factory, dim)
            return
        except UsageError:
            continue
    empty_index(factory, _DIMENSIONS[-1])


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
