"""Is the Hugging Face hub there? Asked once, up front, so that a run without it stops in one line at once instead of
each download retrying for half a minute; and which hub datasets a set of tasks reads."""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from pathlib import Path

from sbert_repro.data.tasks import NLI_TASKS, STS_TASKS, retrieval_task

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
