"""Where rows come from: local files (each row with its "file:line") and Hugging Face hub splits (each with
its "dataset (split) row i", and the commit it was read at); the checks of a row's fields; a file of sentences.

Every problem is a UsageError naming the file, line or dataset row and what to do.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
from collections.abc import Container, Iterable, Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from sbert_repro.data.hub import hub_error_reason, hub_offline
from sbert_repro.errors import UsageError

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- files

def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) for each non-blank line; UsageError on a missing or unreadable file or bad UTF-8."""
    return ((line_no, line) for line_no, _, line in read_lines_at(path))


def read_lines_at(path: Path) -> Iterator[tuple[int, tuple[int, int], str]]:
    """read_lines, each line with its bytes' span [start, end) in the file (to read it back by seeking)."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found; give --data-dir a folder laid out as ../shared/data") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot read it ({error.strerror}); check that it is a readable file") from None
    start = 0
    with handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UsageError(f"{path}:{line_no}: not valid UTF-8; re-save the file as UTF-8") from None
            if line_no == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark, as Windows editors and Excel save UTF-8
            if line.strip():
                yield line_no, (start, start + len(raw)), line.rstrip("\r\n")
            start += len(raw)


# A \uD800-\uDFFF escape: JSON can name half a surrogate pair, which no UTF-8 text (or tokenizer) can hold.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; UsageError on a bad line."""
    return ((line_no, row) for line_no, _, row in read_jsonl_at(path))


def read_jsonl_at(path: Path) -> Iterator[tuple[int, tuple[int, int], dict[str, Any]]]:
    """read_jsonl, each object with its line's span of bytes in the file (read_lines_at)."""
    for line_no, span, line in read_lines_at(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}:{line_no}: not valid JSON ({error.msg.removesuffix(' at')} at column "
                             f"{error.colno}); fix or remove the line") from None
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
        yield line_no, span, row


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
    value = as_id(row["_id"], where, "_id")
    if value in seen:
        raise UsageError(f"{where}: duplicate _id {value!r} in {source}; ids must be unique")
    return value


def as_id(value: Any, where: str, name: str) -> str:
    """An id as BEIR reads it: a non-empty string, or an integer (BEIR's files and mteb's hub copies write some ids
    as numbers), read as its decimal string. A list, an object, a boolean or a float is no id."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{where}: field {name!r} must be a non-empty string or an integer, got {value!r}; fix the "
                         "row")
    return value


def hub_rows(dataset_id: str, config: str | None, split: str, revision: str | None, option: str = "--data-dir"
             ) -> tuple[Iterable[tuple[str, dict[str, Any]]], str]:
    """A hub split's rows, each with where it stands, and their source "hf:<id>@<commit>:<split>" (the commit
    the split was read at, also where none was pinned)."""
    dataset = load_split(dataset_id, config, split, revision, option)
    read = hub_commit(dataset)
    if read and revision and read != revision:
        _warn_revision(dataset_id, revision, read)
    commit = read or (None if Path(dataset_id).is_dir() else revision)
    name = f"{dataset_id} ({split})" if config in (None, "default") else f"{dataset_id} ({config}, {split})"
    source = f"hf:{dataset_id}{'@' + commit if commit else ''}:{split if config in (None, 'default') else config}"
    return ((f"{name} row {i}", row) for i, row in enumerate(dataset)), source


@functools.cache  # one line per dataset and commit, however many of its splits and configs are read
def _warn_revision(dataset_id: str, pinned: str, read: str) -> None:
    logger.warning("%s: read at commit %s, not at the pinned %s (offline, `datasets` reads its newest cached copy); "
                   "the record names both under revision_mismatches", dataset_id, read[:12], pinned[:12])


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
    import huggingface_hub.utils
    from datasets import load_dataset  # slow import: only on the hub path

    # The hub client's HTTP library (httpx, under whichever name its version ships it) raises its own errors for a
    # connection dropped mid-answer; huggingface_hub's HTTP errors, and requests' in older versions, are OSErrors.
    transport = getattr(huggingface_hub.utils, "httpx", None)
    failures = (ConnectionError, OSError, *((transport.HTTPError,) if transport else ()))
    try:
        return load_dataset(dataset_id, config, split=split, revision=revision)
    except failures as error:
        raise UsageError(f"cannot load {dataset_id} from the Hugging Face hub: {hub_failure(error)}") from None
    except ValueError as error:  # an unknown split, or a cache that holds only part of the dataset
        said = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UsageError(f"cannot load {dataset_id} ({config or 'default'}, {split}): {said}; check {option}, or "
                         "give --data-dir a folder laid out as ../shared/data") from None


def hub_failure(error: BaseException) -> str:
    """Why a hub download failed, in one line: the hub's HTTP answer and what to do about it, where one came;
    "offline" only where offline mode is in force; else the connection failure as the library names it."""
    answered = hub_error_reason(error)
    if answered is not None:
        return answered
    if hub_offline():
        return "offline, and not in the local cache; pass --data-dir DIR with local copies laid out as ../shared/data"
    said = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return (f"no answer from the hub ({type(error).__name__}{': ' + said if said else ''}); try again, or pass "
            "--data-dir DIR with local copies laid out as ../shared/data")


def read_sentences(path: Path, option: str) -> list[str]:
    """The non-blank lines of a UTF-8 text file; unreadable or empty is one line naming `option`."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: a byte-order mark is no text
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{option} {path}: cannot read it as UTF-8 text "
                         f"({getattr(error, 'strerror', None) or type(error).__name__})") from None
    sentences = list(dict.fromkeys(line.strip() for line in lines if line.strip()))
    if len(sentences) < 2:
        raise UsageError(f"{option} {path}: {len(sentences)} distinct non-blank line(s); give at least 2 sentences")
    return sentences


def first_rows(rows: Any, n: int) -> Any:
    """The first n rows of a frozen dataclass of parallel lists with a `source` (for --max-train-samples): every list
    cut to n and the source saying so; the rows as they were when there are no more than n."""
    if n >= len(rows):
        return rows
    cut = {item.name: getattr(rows, item.name)[:n] for item in fields(rows)
           if isinstance(getattr(rows, item.name), list)}
    return replace(rows, **cut, source=f"{rows.source} (first {n})")
