"""A retrieval task's corpus read from its file by offsets: BEIR's {doc_id: {"title", "text"}} mapping, in corpus
order, holding only each document's id and where its row lies in corpus.jsonl, not its text.

A corpus of millions (MS MARCO's 8.8M passages) held as dicts of text takes about 700 bytes a document; this takes
about 120 (the id and two offsets), and the text is read back a chunk of rows at a time where it is encoded, or a
document at a time where a re-ranker or a run needs it. A plain dict is a corpus too: every reader takes a
Mapping, and corpus_texts reads either.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from array import array
from collections.abc import Container, ItemsView, Iterator, Mapping, ValuesView
from pathlib import Path
from typing import Any

import numpy as np

from sbert_repro.data.sources import id_field, read_jsonl, read_jsonl_at
from sbert_repro.errors import UsageError


class FileCorpus(Mapping[str, dict[str, str]]):
    """The documents of a JSON lines corpus file, each read back from the file when asked for. Built by the
    loader as it checks each row (add), so a row read back is one that passed its checks."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._rows: dict[str, int] = {}  # id -> row, in corpus order
        self._starts, self._ends = array("q"), array("q")  # byte span of each row's line: 16 bytes a document
        self.empty = 0  # documents with neither title nor text

    def add(self, doc_id: str, start: int, end: int, empty: bool) -> None:
        """The next document: its id, the bytes [start, end) of its line in the file, and whether it is empty."""
        self.empty += empty
        self._rows[doc_id] = len(self._rows)
        self._starts.append(start)
        self._ends.append(end)

    def finish(self) -> FileCorpus:
        """Every row added: the spans as numpy arrays (sliced without copying)."""
        self._starts, self._ends = (np.frombuffer(spans, dtype=np.int64) for spans in (self._starts, self._ends))
        return self

    def __getitem__(self, doc_id: str) -> dict[str, str]:
        row = self._rows[doc_id]
        return self.documents(row, row + 1)[0]

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def values(self) -> _Documents:  # a pass over the file a chunk at a time, not a seek per document
        return _Documents(self)

    def items(self) -> _IdsAndDocuments:
        return _IdsAndDocuments(self)

    def chunks(self, rows: int = 8192) -> Iterator[list[dict[str, str]]]:
        """The documents in corpus order, `rows` at a time."""
        for start in range(0, len(self), rows):
            yield self.documents(start, min(start + rows, len(self)))

    def documents(self, start: int, stop: int) -> list[dict[str, str]]:
        """The {"title", "text"} of rows [start, stop), read in one pass over their bytes of the file."""
        if start >= stop:
            return []
        first, last = int(self._starts[start]), int(self._ends[stop - 1])
        try:
            with open(self.path, "rb") as file:
                file.seek(first)
                block = file.read(last - first)
            found = []
            for begin, end in zip(self._starts[start:stop], self._ends[start:stop], strict=True):
                row = json.loads(block[begin - first:end - first].decode("utf-8").removeprefix("\ufeff"))
                found.append({"title": row.get("title") or "", "text": row["text"]})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise UsageError(f"{self.path}: changed since it was read ({type(error).__name__}); read it again: run "
                             "the command again, and leave the file alone while it runs") from None
        return found


class _Documents(ValuesView):
    def __iter__(self) -> Iterator[dict[str, str]]:
        for chunk in self._mapping.chunks():
            yield from chunk


class _IdsAndDocuments(ItemsView):
    def __iter__(self) -> Iterator[tuple[str, dict[str, str]]]:
        return zip(self._mapping, _Documents(self._mapping), strict=True)


def document_text(title: str, text: str) -> str:
    """The BEIR convention for titled documents: title + " " + text (no leading space when untitled)."""
    return (title + " " + text).strip()


def corpus_texts(corpus: Mapping[str, dict[str, str]], start: int, stop: int) -> list[str]:
    """The texts (document_text) of the corpus's rows [start, stop), in corpus order."""
    documents = corpus.documents(start, stop) if isinstance(corpus, FileCorpus) else \
        list(itertools.islice(corpus.values(), start, stop))
    return [document_text(document["title"], document["text"]) for document in documents]


def corpus_sha256(corpus: Mapping[str, dict[str, str]]) -> str:
    """sha256 of what a corpus's vectors are made from: a FileCorpus's file as it is on disk (read in blocks, not
    parsed), or a mapping's ids, titles and texts in corpus order."""
    digest = hashlib.sha256()
    if isinstance(corpus, FileCorpus):
        with open(corpus.path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
    else:
        for doc_id, document in corpus.items():
            digest.update(json.dumps([doc_id, document["title"], document["text"]]).encode() + b"\n")
    return digest.hexdigest()


def set_sha256(rows: Any) -> str:
    """sha256 of a set's rows as loaded, in order, not of where they came from: a retrieval task's corpus
    (corpus_sha256), queries and judgements; or a dataclass of parallel lists (pairs and their scores or labels;
    training pairs before any negatives are mined for them)."""
    digest = hashlib.sha256()
    if hasattr(rows, "corpus") and hasattr(rows, "qrels"):
        digest.update(corpus_sha256(rows.corpus).encode())
        digest.update(json.dumps([rows.queries, rows.qrels], sort_keys=True).encode())
    else:
        digest.update(json.dumps({field.name: getattr(rows, field.name) for field in dataclasses.fields(rows)
                                  if field.name not in ("source", "negatives")}, sort_keys=True).encode())
    return digest.hexdigest()


def read_corpus_file(path: Path) -> FileCorpus:
    """A BEIR corpus.jsonl, each row checked (corpus_row), held as ids and offsets."""
    corpus = FileCorpus(path)
    for line_no, (start, end), row in read_jsonl_at(path):
        doc_id, title, text = corpus_row(row, f"{path}:{line_no}", corpus, path)
        corpus.add(doc_id, start, end, empty=not (title + text).strip())
    if not corpus:
        raise UsageError(f"{path}: no rows; the file is empty")
    return corpus.finish()


def corpus_row(row: dict[str, Any], where: str, seen: Container[str], source: Any) -> tuple[str, str, str]:
    """A BEIR corpus row's (_id, title, text), checked; title is "" when absent, text may be empty (BEIR and mteb
    keep it: TREC-COVID has title-only documents)."""
    doc_id = id_field(row, where, seen, source)
    title = row.get("title")
    title = "" if title is None else title  # absent or null: untitled, as BEIR reads it
    if not isinstance(title, str):
        raise UsageError(f"{where}: field 'title' must be a string, got {title!r}; fix the row")
    if "text" not in row:
        raise UsageError(f"{where}: missing field 'text'; every row needs it")
    if not isinstance(row["text"], str):
        raise UsageError(f"{where}: field 'text' must be a string, got {row['text']!r}; fix the row")
    return doc_id, title, row["text"]


def iter_corpus(path: Path) -> Iterator[tuple[str, str, str]]:
    """(doc id, title, text) of each document of a corpus: a JSON lines file of {"_id", "title"?, "text"} rows, or
    a BEIR folder holding corpus.jsonl. Streams: only the ids are kept, to refuse duplicates."""
    path = Path(path)
    if path.is_dir():
        if not (path / "corpus.jsonl").is_file():
            raise UsageError(f"--corpus {path}: a folder must be in BEIR layout, with corpus.jsonl in it; "
                             "give that file or a JSON lines file of {\"_id\", \"text\"} rows")
        path = path / "corpus.jsonl"
    seen: set[str] = set()
    for line_no, row in read_jsonl(path):
        doc_id, title, text = corpus_row(row, f"{path}:{line_no}", seen, path)
        seen.add(doc_id)
        yield doc_id, title, text
    if not seen:
        raise UsageError(f"{path}: no rows; the file is empty")
