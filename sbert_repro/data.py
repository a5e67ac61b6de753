"""Loaders: every task from the Hugging Face hub, or from local files laid out as ../shared/data.

Both sources go through the same row checks and give the same rows and scores (hub scores are
rescaled to the task's own scale). Bad input raises UsageError naming the file (or dataset) and row.

Local layout under --data-dir:
    sts/<task>/<split>.jsonl              {"sentence1", "sentence2", "score"} per line
    retrieval/<task>/corpus.jsonl         {"_id", "title", "text"}
    retrieval/<task>/queries.jsonl        {"_id", "text"}
    retrieval/<task>/qrels/<split>.tsv    query-id <TAB> corpus-id <TAB> score, with a header line
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sbert_repro.errors import UsageError
from sbert_repro.tasks import NLI_LABELS, NLI_TASKS, RETRIEVAL_TASKS, STS_TASKS, RetrievalTask, STSTask

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class STSPairs:
    """Sentence pairs and gold scores on the task's own scale (e.g. 0..5)."""

    sentences1: list[str]
    sentences2: list[str]
    scores: list[float]
    source: str  # the file or hub dataset the rows came from

    def __len__(self) -> int:
        return len(self.scores)

    def head(self, n: int) -> STSPairs:
        """The first n pairs (for --max-train-samples)."""
        return STSPairs(self.sentences1[:n], self.sentences2[:n], self.scores[:n], f"{self.source} (first {n})")


@dataclass(frozen=True)
class RetrievalData:
    """BEIR's plain dicts: corpus {doc_id: {title, text}}, queries {qid: text}, qrels {qid: {doc_id: grade}}."""

    corpus: dict[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    source: str
    # Documents that never count as hits for a query (in stsb-retrieval, the query's own sentence).
    excluded: dict[str, set[str]] = field(default_factory=dict)


# ----------------------------------------------------------------------------- STS

def load_sts(task_name: str, split: str, data_dir: Path | None) -> STSPairs:
    """One split of an STS task, from `data_dir` if given, else from the hub."""
    task = STS_TASKS[task_name]
    if split not in task.splits:
        raise UsageError(f"task {task.name} has no {split!r} split; it has {', '.join(task.splits)}")
    rows, source = _split_rows(data_dir, task.local_dir, split, task.hub_id, None, task.hub_revision)
    rescale = 1.0 if data_dir is not None else task.score_max / task.hub_score_max
    return _sts_pairs(task, rows, source, rescale)


def _split_rows(data_dir: Path | None, local_dir: str, split: str, hub_id: str, hub_config: str | None,
                hub_revision: str | None) -> tuple[Iterable[tuple[str, dict[str, Any]]], str]:
    """A split's rows, each with where it stands ("file:line" or "dataset (split) row i"), and their source."""
    if data_dir is not None:
        path = Path(data_dir) / local_dir / f"{split}.jsonl"
        return ((f"{path}:{line_no}", row) for line_no, row in _read_jsonl(path)), str(path)
    dataset = _load_hub(hub_id, hub_config, split, hub_revision)
    return ((f"{hub_id} ({split}) row {i}", row) for i, row in enumerate(dataset)), f"hf:{hub_id}:{split}"


def _sts_pairs(task: STSTask, rows: Iterable[tuple[str, dict[str, Any]]], source: str,
               rescale: float) -> STSPairs:
    sentences1, sentences2, scores = [], [], []
    for where, row in rows:
        sentences1.append(_text_field(row, "sentence1", where))
        sentences2.append(_text_field(row, "sentence2", where))
        score = _number_field(row, "score", where) * rescale
        # A small tolerance: hub scores stored as gold/5 come back as e.g. 5.000000000000001.
        if not (task.score_min - 1e-9 <= score <= task.score_max + 1e-9):
            raise UsageError(f"{where}: score {score:g} is outside {task.name}'s range "
                             f"{task.score_min:g}..{task.score_max:g}; fix or remove the row")
        scores.append(score)
    if not scores:
        raise UsageError(f"{source}: no rows; the file is empty")
    logger.info("loaded %d pairs from %s", len(scores), source)
    return STSPairs(sentences1, sentences2, scores, source)


# ----------------------------------------------------------------------------- NLI

@dataclass(frozen=True)
class NLIPairs:
    """Premise/hypothesis pairs with label ids (0 entailment, 1 neutral, 2 contradiction)."""

    premises: list[str]
    hypotheses: list[str]
    labels: list[int]
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> NLIPairs:
        """The first n pairs (for --max-train-samples)."""
        return NLIPairs(self.premises[:n], self.hypotheses[:n], self.labels[:n], f"{self.source} (first {n})")


def load_nli(task_name: str, split: str, data_dir: Path | None) -> NLIPairs:
    """One split of an NLI set. Pairs without a gold label (SNLI's -1 or "-") are left out, as usual."""
    task = NLI_TASKS[task_name]
    if split not in task.splits:
        raise UsageError(f"--nli-split: {task.name} has no {split!r} split; it has {', '.join(task.splits)}")
    rows, source = _split_rows(data_dir, task.local_dir, split, task.hub_id, task.hub_config, task.hub_revision)
    premises, hypotheses, labels = [], [], []
    for where, row in rows:
        label = _nli_label(row, where)
        if label is None:
            continue
        premises.append(_text_field(row, "premise", where))
        hypotheses.append(_text_field(row, "hypothesis", where))
        labels.append(label)
    if not labels:
        raise UsageError(f"{source}: no labelled pairs; the file is empty")
    logger.info("loaded %d NLI pairs from %s", len(labels), source)
    return NLIPairs(premises, hypotheses, labels, source)


def _nli_label(row: dict[str, Any], where: str) -> int | None:
    if "label" not in row:
        raise UsageError(f"{where}: missing field 'label'; every row needs it")
    label = row["label"]
    if label in (-1, "-"):
        return None
    if isinstance(label, str) and label in NLI_LABELS:
        return NLI_LABELS.index(label)
    if isinstance(label, int) and not isinstance(label, bool) and 0 <= label < len(NLI_LABELS):
        return label
    raise UsageError(f"{where}: label {label!r} is not one of {', '.join(NLI_LABELS)} (or 0-2); fix the row")


# ----------------------------------------------------------------------------- retrieval

def load_retrieval(task_name: str, data_dir: Path | None) -> RetrievalData:
    """A retrieval task's corpus, queries (those with judgements) and qrels."""
    task = RETRIEVAL_TASKS[task_name]
    if task.derived_from is not None:
        return retrieval_from_sts(load_sts(task.derived_from, task.split, data_dir), task)
    if data_dir is not None:
        return _load_local_beir(task, Path(data_dir) / task.local_dir)
    return _load_hub_beir(task)


def retrieval_from_sts(pairs: STSPairs, task: RetrievalTask) -> RetrievalData:
    """STS pairs as a retrieval task.

    Queries are the distinct sentence1 of pairs scored >= task.min_relevant_score; the corpus is every
    distinct sentence of the split; a query's relevant documents are the sentences paired with it at
    that score or above, and its own sentence never counts as a hit. Ids are stable: "s<n>" in order
    of first appearance.
    """
    threshold = task.min_relevant_score if task.min_relevant_score is not None else 0.0
    ids: dict[str, str] = {}
    for s1, s2 in zip(pairs.sentences1, pairs.sentences2, strict=True):
        for sentence in (s1, s2):
            ids.setdefault(sentence, f"s{len(ids)}")
    qrels: dict[str, dict[str, int]] = {}
    for s1, s2, score in zip(pairs.sentences1, pairs.sentences2, pairs.scores, strict=True):
        if score >= threshold and s1 != s2:
            qrels.setdefault(ids[s1], {})[ids[s2]] = 1
    if not qrels:
        raise UsageError(f"{pairs.source}: no pair scores {threshold:g} or more, so {task.name} has no query; "
                         "use a split with such pairs or leave the task out (--retrieval-tasks)")
    corpus = {doc_id: {"title": "", "text": sentence} for sentence, doc_id in ids.items()}
    queries = {doc_id: corpus[doc_id]["text"] for doc_id in qrels}
    return RetrievalData(corpus, queries, qrels, source=f"{pairs.source} (pairs scored >= {threshold:g})",
                         excluded={qid: {qid} for qid in queries})


def _load_local_beir(task: RetrievalTask, folder: Path) -> RetrievalData:
    corpus_path, queries_path = folder / "corpus.jsonl", folder / "queries.jsonl"
    corpus: dict[str, dict[str, str]] = {}
    for line_no, row in _read_jsonl(corpus_path):
        doc_id, title, text = _corpus_row(row, f"{corpus_path}:{line_no}", corpus, corpus_path)
        corpus[doc_id] = {"title": title, "text": text}
    queries: dict[str, str] = {}
    for line_no, row in _read_jsonl(queries_path):
        where = f"{queries_path}:{line_no}"
        queries[_id_field(row, where, queries, queries_path)] = _text_field(row, "text", where)
    qrels_path = folder / "qrels" / f"{task.split}.tsv"
    qrels = _read_qrels(qrels_path, corpus, queries)
    for path, rows in ((corpus_path, corpus), (queries_path, queries)):
        if not rows:
            raise UsageError(f"{path}: no rows; the file is empty")
    return _only_judged_queries(corpus, queries, qrels, source=str(folder))


def _corpus_row(row: dict[str, Any], where: str, seen: Container[str], source: Any) -> tuple[str, str, str]:
    """A BEIR corpus row's (_id, title, text), checked; title is "" when absent."""
    doc_id = _id_field(row, where, seen, source)
    title = row.get("title") or ""
    if not isinstance(title, str):
        raise UsageError(f"{where}: field 'title' must be a string; fix the row")
    return doc_id, title, _text_field(row, "text", where)


def document_text(title: str, text: str) -> str:
    """The BEIR convention for titled documents: title + " " + text (no leading space when untitled)."""
    return (title + " " + text).strip()


def iter_corpus(path: Path) -> Iterator[tuple[str, str]]:
    """(doc id, text) of each document of a corpus: a JSON lines file of {"_id", "title"?, "text"} rows, or a
    BEIR folder holding corpus.jsonl. Streams: only the ids are kept, to refuse duplicates."""
    path = Path(path)
    if path.is_dir():
        if not (path / "corpus.jsonl").is_file():
            raise UsageError(f"--corpus {path}: a folder must be in BEIR layout, with corpus.jsonl in it; "
                             "give that file or a JSON lines file of {\"_id\", \"text\"} rows")
        path = path / "corpus.jsonl"
    seen: set[str] = set()
    for line_no, row in _read_jsonl(path):
        doc_id, title, text = _corpus_row(row, f"{path}:{line_no}", seen, path)
        seen.add(doc_id)
        yield doc_id, document_text(title, text)
    if not seen:
        raise UsageError(f"{path}: no rows; the file is empty")


def _read_qrels(path: Path, corpus: dict[str, Any], queries: dict[str, str]) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for line_no, line in _lines(path):
        fields = line.split("\t")
        if line_no == 1 and fields[:2] == ["query-id", "corpus-id"]:
            continue  # BEIR's header line
        _check_qrel(path, line_no, fields, corpus, queries)
        qrels.setdefault(fields[0], {})[fields[1]] = int(fields[2])
    if not qrels:
        raise UsageError(f"{path}: no judgements; the file is empty")
    return qrels


def _check_qrel(path: Path, line_no: int, fields: list[str], corpus: dict[str, Any],
                queries: dict[str, str]) -> None:
    where = f"{path}:{line_no}"
    if len(fields) != 3:
        raise UsageError(f"{where}: expected 3 tab-separated fields (query-id, corpus-id, score), "
                         f"got {len(fields)}; fix the line")
    qid, doc_id, grade = fields
    if qid not in queries:
        raise UsageError(f"{where}: query-id {qid!r} is not in queries.jsonl; fix the qrels or the queries")
    if doc_id not in corpus:
        raise UsageError(f"{where}: corpus-id {doc_id!r} is not in corpus.jsonl; fix the qrels or the corpus")
    try:
        int(grade)
    except ValueError:
        raise UsageError(f"{where}: score {grade!r} is not an integer relevance grade; fix the line") from None


def _load_hub_beir(task: RetrievalTask) -> RetrievalData:
    # mteb's BEIR copies: configs "corpus" and "queries" (one split each) and "default" (the qrels).
    if task.hub_id is None:
        raise ValueError(f"task {task.name} declares no hub dataset")
    name = f"{task.hub_id} (corpus)"
    corpus = {}
    for i, row in enumerate(_load_hub(task.hub_id, "corpus", None, task.hub_revision)):
        where = f"{name} row {i}"
        doc_id = _id_field(row, where, corpus, name)
        corpus[doc_id] = {"title": row.get("title") or "", "text": _text_field(row, "text", where)}
    name = f"{task.hub_id} (queries)"
    queries: dict[str, str] = {}
    for i, row in enumerate(_load_hub(task.hub_id, "queries", None, task.hub_revision)):
        where = f"{name} row {i}"
        queries[_id_field(row, where, queries, name)] = _text_field(row, "text", where)
    qrels: dict[str, dict[str, int]] = {}
    name = f"{task.hub_id} (qrels {task.split})"
    for i, row in enumerate(_load_hub(task.hub_id, "default", task.split, task.hub_revision)):
        fields = [str(row.get("query-id")), str(row.get("corpus-id")), str(row.get("score"))]
        _check_qrel(Path(name), i, fields, corpus, queries)
        qrels.setdefault(fields[0], {})[fields[1]] = int(fields[2])
    return _only_judged_queries(corpus, queries, qrels, source=f"hf:{task.hub_id}:{task.split}")


def _only_judged_queries(corpus: dict[str, dict[str, str]], queries: dict[str, str],
                         qrels: dict[str, dict[str, int]], source: str) -> RetrievalData:
    # BEIR scores only the queries that have judgements in the split (SciFact test: 300 of 1,109).
    judged = {qid: queries[qid] for qid in qrels}
    logger.info("loaded %d documents, %d judged queries from %s", len(corpus), len(judged), source)
    return RetrievalData(corpus, judged, qrels, source=source)


# ----------------------------------------------------------------------------- rows and files

def _lines(path: Path) -> Iterator[tuple[int, str]]:
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


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; UsageError on a bad line."""
    for line_no, line in _lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}:{line_no}: not valid JSON ({error.msg}); fix or remove the line") from None
        if not isinstance(row, dict):
            raise UsageError(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}; fix the line")
        yield line_no, row


def _text_field(row: dict[str, Any], key: str, where: str) -> str:
    if key not in row:
        raise UsageError(f"{where}: missing field {key!r}; every row needs it")
    value = row[key]
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{where}: field {key!r} must be a non-empty string, got {value!r}; fix or remove the row")
    return value


def _number_field(row: dict[str, Any], key: str, where: str) -> float:
    if key not in row:
        raise UsageError(f"{where}: missing field {key!r}; every row needs it")
    value = row[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{where}: field {key!r} must be a finite number, got {value!r}; fix the row")
    return float(value)


def _id_field(row: dict[str, Any], where: str, seen: Container[str], source: Any) -> str:
    if "_id" not in row:
        raise UsageError(f"{where}: missing field '_id'; every row needs it")
    value = str(row["_id"])
    if value in seen:
        raise UsageError(f"{where}: duplicate _id {value!r} in {source}; ids must be unique")
    return value


def _load_hub(dataset_id: str, config: str | None, split: str | None, revision: str | None):
    """A hub dataset split (a single-split config when split is None); UsageError when unreachable."""
    from datasets import get_dataset_split_names, load_dataset  # slow import: only on the hub path

    try:
        if split is None:
            split = get_dataset_split_names(dataset_id, config_name=config, revision=revision)[0]
        return load_dataset(dataset_id, config, split=split, revision=revision)
    except (ConnectionError, OSError) as error:
        raise UsageError(f"cannot load {dataset_id} from the Hugging Face hub ({type(error).__name__}); "
                         "offline, pass --data-dir DIR with local copies laid out as ../shared/data") from None


def correlatable(pairs: STSPairs) -> STSPairs:
    """`pairs`, if a correlation with their gold scores can be computed (two pairs, two different scores)."""
    if len(set(pairs.scores)) < 2:
        raise UsageError(f"{pairs.source}: a correlation needs at least two pairs with different gold scores; "
                         f"this split has {len(pairs)} pair(s) and {len(set(pairs.scores))} distinct score(s)")
    return pairs


def load_eval_sets(sts_tasks: tuple[str, ...], retrieval_tasks: tuple[str, ...], data_dir: Path | None
                   ) -> tuple[dict[str, STSPairs], dict[str, RetrievalData]]:
    """Every evaluation set a run scores (STS test splits, retrieval tasks), loaded and checked once."""
    sts_sets = {name: correlatable(load_sts(name, "test", data_dir)) for name in sts_tasks}
    retrieval_sets = {name: load_retrieval(name, data_dir) for name in retrieval_tasks}
    return sts_sets, retrieval_sets
