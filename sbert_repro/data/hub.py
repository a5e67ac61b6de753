"""Is the Hugging Face hub there? Asked once, up front, so that a run without it stops in one line at once instead of
each download retrying for half a minute; and which hub datasets a set of tasks reads."""

from __future__ import annotations

import http.client
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from sbert_repro.data.tasks import NLI_TASKS, RETRIEVAL_TASKS, STS_TASKS, retrieval_task

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def hub_offline() -> bool:
    """Whether the Hugging Face libraries are told to stay offline (and read only their caches)."""
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes", "on") for name in OFFLINE_VARIABLES)


def hub_unreachable_reason() -> str | None:
    """Why the Hugging Face hub cannot be reached from here, or None when it can. Only no connection (refused, DNS,
    TLS) or no answer in time means out of reach: any HTTP answer, 401, 404 or 429 included, is a hub (or a mirror,
    or an authenticating proxy) that is there, and the libraries report what it said."""
    if hub_offline():
        return "HF_HUB_OFFLINE is set"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")  # a mirror, as the libraries
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=3).close()
    except urllib.error.HTTPError:  # an answer, whatever its status
        return None
    except (OSError, http.client.HTTPException) as error:  # URLError, timeouts, DNS failures; a garbled answer
        cause = getattr(error, "reason", None)
        name = type(cause if isinstance(cause, BaseException) else error).__name__
        return f"{urllib.parse.urlsplit(endpoint).netloc or endpoint} is not reachable ({name})"
    return None


# What to do about an HTTP status the hub (or a mirror, or a proxy) answered with.
HTTP_ADVICE = {
    401: "a token is needed: log in with `hf auth login` (`huggingface-cli login` in huggingface_hub before 1.0) "
         "or set HF_TOKEN",
    403: "this token may not read it (a gated dataset: ask for access on its page)",
    404: "it is not there: check the name, and HF_ENDPOINT where it points at a mirror",
    429: "the hub is limiting this machine's requests: try again later (a logged-in user's limit is higher)",
}


def hub_http_error(error: BaseException) -> BaseException | None:
    """The HTTP answer behind `error` (huggingface_hub's HfHubHTTPError, with the response), followed through the
    exceptions it was raised from or during (`datasets` re-raises hub errors as its own, or as FileNotFoundError,
    keeping the original there); None where no answer came. A connection failure or timeout met first is the
    failure, whatever answer an earlier request had (a 404 for a missing README, say, which `datasets` tolerates)."""
    import huggingface_hub.utils
    from huggingface_hub.errors import HfHubHTTPError  # only once something has failed

    transport = getattr(huggingface_hub.utils, "httpx", None)  # the hub client's HTTP library, as load_split reads it
    no_answer = (ConnectionError, TimeoutError, *((transport.TransportError,) if transport else ()))
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        if isinstance(link, HfHubHTTPError) and getattr(link, "response", None) is not None:
            return link
        if isinstance(link, no_answer):
            return None
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return None


def hub_error_reason(error: BaseException) -> str | None:
    """The hub's HTTP answer behind `error` in one line: its status, the library's own message (and the server's,
    where it sent one) and what to do; None where no answer came (no connection, no DNS, a timeout)."""
    answer = hub_http_error(error)
    if answer is None:
        return None
    status = answer.response.status_code  # type: ignore[attr-defined]
    said = str(answer).strip().splitlines()[0] if str(answer).strip() else type(answer).__name__
    server = getattr(answer, "server_message", None)
    if server and server.strip() and server.strip() not in said:
        said += f"; the server says: {' '.join(server.split())}"
    advice = HTTP_ADVICE.get(status, "the hub's own failure: try again later" if status >= 500 else
                             "see the hub's answer")
    return f"the hub answered {status} ({said}); {advice}"


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


def pinned_revisions() -> dict[str, str]:
    """Every hub dataset the registry pins to a commit: {dataset id: commit}."""
    tasks = [*STS_TASKS.values(), *RETRIEVAL_TASKS.values(), *NLI_TASKS.values()]
    return {task.hub_id: task.hub_revision for task in tasks if task.hub_id and task.hub_revision}


# A hub source as data/sources.py's hub_rows names it: hf:<dataset id>@<commit>:<split or config>.
_HUB_SOURCE = re.compile(r"hf:(?P<dataset>[^@\s;]+)@(?P<commit>[0-9a-f]{40})")


def revision_mismatches(sources: dict[str, str]) -> dict[str, dict[str, str]]:
    """The hub datasets among `sources` (a record's "data": {what: source}) read at another commit than the
    registry pins: {dataset id: {"pinned": commit, "read": commit}}. Offline, `datasets` reads its newest cached
    copy, whatever the pin."""
    pins, found = pinned_revisions(), {}
    for source in sources.values():
        for match in _HUB_SOURCE.finditer(source):
            dataset, commit = match["dataset"], match["commit"]
            if dataset in pins and pins[dataset] != commit:
                found[dataset] = {"pinned": pins[dataset], "read": commit}
    return found


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
