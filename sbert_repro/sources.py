"""Where rows come from: local files (each row with its "file:line") and Hugging Face hub splits (each with
its "dataset (split) row i", and the commit it was read at), and whether the hub can be reached at all.

Every problem is a UsageError naming the file, line or dataset row and what to do.
"""

from __future__ import annotations

import json
import math
import os
import re
import urllib.parse
import urllib.request
from collections.abc import Container, Iterable, Iterator
from pathlib import Path
from typing import Any

from sbert_repro.config import EvaluateConfig, GeometryConfig, TrainConfig
from sbert_repro.errors import UsageError
from sbert_repro.objectives import OBJECTIVE_STAGES, RETRIEVAL_TRAINING_OBJECTIVES
from sbert_repro.search.config import IndexConfig, SearchConfig
from sbert_repro.tasks import NLI_TASKS, STS_TASKS, TRAIN_TASK, retrieval_task

# ----------------------------------------------------------------------------- files

def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) for each non-blank line; UsageError on a missing or unreadable file or bad UTF-8."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found; give --data-dir a folder laid out as ../shared/data") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot read it ({error.strerror}); check that it is a readable file") from None
    with handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UsageError(f"{path}:{line_no}: not valid UTF-8; re-save the file as UTF-8") from None
            if line.strip():
                yield line_no, line.rstrip("\r\n")


# A \uD800-\uDFFF escape: JSON can name half a surrogate pair, which no UTF-8 text (or tokenizer) can hold.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; UsageError on a bad line."""
    for line_no, line in read_lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}:{line_no}: not valid JSON ({error.msg}); fix or remove the line") from None
        except (RecursionError, ValueError) as error:  # nested too deep; an integer of over 4,300 digits
            reason = "nested too deeply" if isinstance(error, RecursionError) else str(error).split(";")[0]
            raise UsageError(f"{path}:{line_no}: not valid JSON for us ({reason}); fix or remove the line") from None
        if _SURROGATE_ESCAPE.search(line):
            try:
                json.dumps(row, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise UsageError(f"{path}:{line_no}: a \\u escape names half of a surrogate pair, which is no "
                                 "character; fix the line") from None
        if not isinstance(row, dict):
            raise UsageError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}; fix the line")
        yield line_no, row


def file_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The objects of a JSON lines file, each with where it stands ("file:line"), as hub_rows gives a split's."""
    return ((f"{path}:{line_no}", row) for line_no, row in read_jsonl(path))


def text_field(row: dict[str, Any], key: str, where: str) -> str:
    if key not in row:
        raise UsageError(f"{where}: missing field {key!r}; every row needs it")
    value = row[key]
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{where}: field {key!r} must be a non-empty string, got {value!r}; fix or remove the row")
    return value


def number_field(row: dict[str, Any], key: str, where: str) -> float:
    if key not in row:
        raise UsageError(f"{where}: missing field {key!r}; every row needs it")
    value = row[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{where}: field {key!r} must be a finite number, got {value!r}; fix the row")
    return float(value)


def id_field(row: dict[str, Any], where: str, seen: Container[str], source: Any) -> str:
    if row.get("_id") is None:
        raise UsageError(f"{where}: missing field '_id'; every row needs it")
    value = str(row["_id"])
    if value in seen:
        raise UsageError(f"{where}: duplicate _id {value!r} in {source}; ids must be unique")
    return value


def hub_rows(dataset_id: str, config: str | None, split: str, revision: str | None, option: str = "--data-dir"
             ) -> tuple[Iterable[tuple[str, dict[str, Any]]], str]:
    """A hub split's rows, each with where it stands, and their source "hf:<id>@<commit>:<split>" (the commit
    the split was read at, also where none was pinned)."""
    dataset = load_split(dataset_id, config, split, revision, option)
    commit = hub_commit(dataset) or (None if Path(dataset_id).is_dir() else revision)
    name = f"{dataset_id} ({split})" if config in (None, "default") else f"{dataset_id} ({config}, {split})"
    source = f"hf:{dataset_id}{'@' + commit if commit else ''}:{split if config in (None, 'default') else config}"
    return ((f"{name} row {i}", row) for i, row in enumerate(dataset)), source


def hub_commit(dataset: Any) -> str | None:
    """The commit of the hub repository a loaded split came from, read without another request: `datasets`
    caches a hub dataset under .../<config>/<version>/<commit sha>/ (a local folder gets a content hash)."""
    for cache_file in getattr(dataset, "cache_files", None) or []:
        for part in reversed(Path(cache_file["filename"]).parts):
            if re.fullmatch(r"[0-9a-f]{40}", part):
                return part
    return None


# ----------------------------------------------------------------------------- the hub

def load_split(dataset_id: str, config: str | None, split: str, revision: str | None,
               option: str = "--data-dir") -> Any:
    """A hub dataset split; UsageError when it cannot be had (offline and not in the local cache, or no such
    split: `option` is the one that chose it)."""
    from datasets import load_dataset  # slow import: only on the hub path

    try:
        return load_dataset(dataset_id, config, split=split, revision=revision)
    except (ConnectionError, OSError) as error:
        why = ("offline, and not in the local cache" if hub_offline() else type(error).__name__)
        raise UsageError(f"cannot load {dataset_id} from the Hugging Face hub ({why}); "
                         "offline, pass --data-dir DIR with local copies laid out as ../shared/data") from None
    except ValueError as error:  # an unknown split, or a cache that holds only part of the dataset
        said = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UsageError(f"cannot load {dataset_id} ({config or 'default'}, {split}): {said}; check {option}, or "
                         "give --data-dir a folder laid out as ../shared/data") from None


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def hub_offline() -> bool:
    """Whether the Hugging Face libraries are told to stay offline (and read only their caches)."""
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on") for name in OFFLINE_VARIABLES)


def hub_unreachable_reason() -> str | None:
    """Why the Hugging Face hub cannot be reached from here, or None when it can."""
    if hub_offline():
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")  # a mirror, as the libraries
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=3)
    except OSError as error:  # URLError, timeouts and DNS failures are all OSErrors
        return f"{urllib.parse.urlsplit(endpoint).netloc or endpoint} is not reachable ({type(error).__name__})"
    return None


def hub_datasets(sts_tasks: tuple[str, ...], retrieval_tasks: tuple[str, ...], nli_task: str | None = None
                 ) -> list[str]:
    """The hub datasets a run without --data-dir reads: its STS tasks, registry retrieval tasks (a derived one
    reads its STS task) and NLI set."""
    ids = [STS_TASKS[name].hub_id for name in sts_tasks]
    for spec in retrieval_tasks:
        task = retrieval_task(spec)
        ids.append(STS_TASKS[task.derived_from].hub_id if task.derived_from else task.hub_id)
    if nli_task is not None:
        ids.append(NLI_TASKS[nli_task].hub_id)
    return [dataset_id for dataset_id in dict.fromkeys(ids) if dataset_id is not None]


def uncached_hub_datasets(dataset_ids: list[str]) -> list[str]:
    """Those of `dataset_ids` that `datasets` has never cached here (its folder <cache>/<org>___<name>), read
    without importing `datasets`, which takes seconds."""
    # The folder `datasets` resolves (its config.py), without importing it.
    home = os.path.expanduser(os.getenv("HF_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"),
                                                               "huggingface")))
    cache = os.path.expanduser(os.getenv("HF_DATASETS_CACHE", os.path.join(home, "datasets")))
    return [dataset_id for dataset_id in dataset_ids
            if not (Path(cache) / dataset_id.replace("/", "___")).is_dir()]


def stay_offline_if_hub_unreachable() -> str | None:
    """Ask once whether the hub answers; if not, tell the Hugging Face libraries to stay offline, so that they
    read their caches at once rather than retrying for half a minute. Call before they are imported (they read
    these variables then). Returns why the hub is out of reach, or None."""
    reason = hub_unreachable_reason()
    if reason is not None:
        os.environ.update({name: "1" for name in OFFLINE_VARIABLES})
    return reason


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
    stages = OBJECTIVE_STAGES[config.objective] if isinstance(config, TrainConfig) else ()
    # finetune trains and validates on STSb, or on --train-task's judgements; geometry reads STSb test's gold pairs
    on_judgements = any(stage in RETRIEVAL_TRAINING_OBJECTIVES for stage in stages)
    sts_tasks = config.sts_tasks + ((TRAIN_TASK,) if isinstance(config, GeometryConfig) or
                                    (isinstance(config, TrainConfig) and not on_judgements) else ())
    nli_task = config.nli_task if any(stage.startswith("nli") for stage in stages) else None
    train_tasks = (config.train_task,) if on_judgements else ()
    retrieval_tasks = () if isinstance(config, GeometryConfig) else config.retrieval_tasks
    missing = uncached_hub_datasets(hub_datasets(sts_tasks, retrieval_tasks + train_tasks, nli_task))
    if missing:
        raise UsageError(f"cannot load {missing[0]} from the Hugging Face hub ({reason}; not in the local cache "
                         "either); offline, pass --data-dir DIR with local copies laid out as ../shared/data")
