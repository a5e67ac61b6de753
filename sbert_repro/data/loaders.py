"""The loaded sets (STSPairs, NLIPairs, RetrievalData) and their loaders: every task from the Hugging Face hub, or
from local files laid out as ../shared/data.

Both sources go through the same row checks and give the same rows and scores (hub scores are
rescaled to the task's own scale). Bad input raises UsageError naming the file (or dataset) and row.

Local layout under --data-dir:
    sts/<task>/<split>.jsonl              {"sentence1", "sentence2", "score"} per line
    retrieval/<task>/corpus.jsonl         {"_id", "title", "text"}
    retrieval/<task>/queries.jsonl        {"_id", "text"}
    retrieval/<task>/qrels/<split>.tsv    query-id <TAB> corpus-id <TAB> score, with a header line
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sbert_repro.data import sources
from sbert_repro.data.corpus import FileCorpus, corpus_row, read_corpus_file
from sbert_repro.data.sources import (
    file_rows,
    hub_rows,
    id_field,
    number_field,
    read_lines,
    text_field,
)
from sbert_repro.data.tasks import NLI_LABELS, NLI_TASKS, STS_TASKS, RetrievalTask, STSTask, retrieval_task
from sbert_repro.errors import UsageError

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


@dataclass(frozen=True)
class RetrievalData:
    """BEIR's mappings: corpus {doc_id: {title, text}} (a dict, or a FileCorpus reading its file by offsets),
    queries {qid: text}, qrels {qid: {doc_id: grade}}."""

    corpus: Mapping[str, dict[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    source: str
    # What loading tolerated and the run records: judgements naming a document or query that is not there,
    # queries whose id is also a document's (that document never counts as their hit), empty documents.
    checks: dict[str, int] = field(default_factory=dict)


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
        path = in_data_dir(data_dir, local_dir, f"{split}.jsonl")
        return file_rows(path), str(path)
    return hub_rows(hub_id, hub_config, split, hub_revision)


def in_data_dir(data_dir: Path, local_dir: str, wanted: str) -> Path:
    """data_dir/local_dir/wanted (a split's file, a corpus). A task or split missing from a folder that holds others
    of its kind is one line naming them (tasks with their splits), rather than a file not found; a folder holding
    none (not laid out as ../shared/data) is left to the reader's own line."""
    folder, kind = Path(data_dir) / local_dir, Path(data_dir) / Path(local_dir).parent

    def splits(task: Path) -> list[str]:
        return sorted(path.stem for path in task.glob("*.jsonl") if path.stem not in ("corpus", "queries"))

    def held(task: Path) -> str:
        found = splits(task) if kind.name != "retrieval" else []
        return f"{task.name} ({', '.join(found)})" if found else task.name

    if (folder / wanted).exists():
        return folder / wanted
    if folder.is_dir() and splits(folder):
        raise UsageError(f"{folder / wanted}: not there; {folder} holds {', '.join(splits(folder))}: pick one of those")
    tasks = sorted((path for path in kind.glob("*") if path.is_dir()), key=lambda path: path.name)
    if folder.is_dir() or not tasks:
        return folder / wanted
    raise UsageError(f"--data-dir {data_dir}: {folder.name} is not there (no {local_dir}/); there: "
                     f"{'; '.join(held(task) for task in tasks)}; choose one of those{_options_for(kind, tasks)}, or "
                     "leave --data-dir out to read the Hugging Face hub")


TASK_OPTIONS = {"nli": ("--nli-task", "--nli-split")}  # the options that pick a task and its split, by kind


def _options_for(kind: Path, tasks: list[Path]) -> str:
    """The options that pick the first of `tasks` and a split to train on (train, else validation), as a hint."""
    if kind.name not in TASK_OPTIONS:
        return ""
    found = {path.stem for path in tasks[0].glob("*.jsonl")}
    split = next((f" {TASK_OPTIONS[kind.name][1]} {name}" for name in ("train", "validation") if name in found), "")
    return f" ({TASK_OPTIONS[kind.name][0]} {tasks[0].name}{split}, say)"


def _sts_pairs(task: STSTask, rows: Iterable[tuple[str, dict[str, Any]]], source: str,
               rescale: float) -> STSPairs:
    sentences1, sentences2, scores = [], [], []
    for where, row in rows:
        sentences1.append(text_field(row, "sentence1", where))
        sentences2.append(text_field(row, "sentence2", where))
        score = number_field(row, "score", where) * rescale
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
        premises.append(text_field(row, "premise", where))
        hypotheses.append(text_field(row, "hypothesis", where))
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

def load_retrieval(spec: str, data_dir: Path | None, split: str | None = None,
                   option: str = "--retrieval-split") -> RetrievalData:
    """A retrieval task's corpus, queries (those with judgements) and qrels.

    `spec` is a registry name (read from `data_dir`, else the hub) or the path of a folder in BEIR layout;
    `split` picks the judgements (default: the task's own, "test"), as the command line `option` names it.
    """
    task = retrieval_task(spec)
    if task.derived_from is not None:  # its own split always: --retrieval-split names qrels files
        return retrieval_from_sts(load_sts(task.derived_from, task.split, data_dir), task)
    split = split or task.split
    if task.folder is not None:
        return read_beir_folder(task.folder, split, task.name, option)
    if data_dir is not None:
        return read_beir_folder(in_data_dir(data_dir, task.local_dir, "corpus.jsonl").parent, split, task.name, option)
    return _load_hub_beir(task, split, option)


def retrieval_from_sts(pairs: STSPairs, task: RetrievalTask) -> RetrievalData:
    """STS pairs as a retrieval task.

    Queries are the distinct sentence1 of pairs scored >= task.min_relevant_score; the corpus is every
    distinct sentence of the split; a query's relevant documents are the sentences paired with it at
    that score or above. Ids are stable: "s<n>" in order of first appearance, so a query's id is its own
    sentence's, and (as for every task) its own sentence never counts as a hit.
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
                         checks={"identical_ids_ignored": len(queries)})


def read_beir_folder(folder: Path, split: str, name: str, option: str = "--retrieval-split") -> RetrievalData:
    """A folder in BEIR layout: corpus.jsonl, queries.jsonl, qrels/<split>.tsv (fields beyond BEIR's ignored)."""
    corpus_path, queries_path = folder / "corpus.jsonl", folder / "queries.jsonl"
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if (folder / "qrels").is_dir() and not qrels_path.exists():
        splits = sorted(path.stem for path in (folder / "qrels").glob("*.tsv"))
        raise UsageError(f"{qrels_path}: no judgements for split {split!r}; this folder has "
                         f"{', '.join(splits) or 'none'}: pick one with {option}")
    corpus = read_corpus_file(corpus_path)
    queries = _queries(file_rows(queries_path), str(queries_path))
    qrels = _qrels(((f"{qrels_path}:{n}", fields) for n, fields in _qrels_lines(qrels_path)), str(qrels_path))
    return beir_task(name, corpus, queries, qrels, source=f"{folder} ({split})", qrels_source=str(qrels_path),
                     option=option)


def _load_hub_beir(task: RetrievalTask, split: str, option: str) -> RetrievalData:
    # mteb's BEIR copies: config "corpus" (split "corpus"), "queries" (split "queries") and "default", whose
    # splits are the judgements; mteb stores the grades as float64 (1.0), which are read as the integers they are.
    if task.hub_id is None:
        raise ValueError(f"task {task.name} declares no hub dataset")
    rows, corpus_source = hub_rows(task.hub_id, "corpus", "corpus", task.hub_revision)
    corpus = _corpus(rows, corpus_source)
    rows, queries_source = hub_rows(task.hub_id, "queries", "queries", task.hub_revision)
    queries = _queries(rows, queries_source)
    rows, qrels_source = hub_rows(task.hub_id, "default", split, task.hub_revision, option=option)
    qrels = _qrels(((where, [row.get("query-id"), row.get("corpus-id"), row.get("score")]) for where, row in rows),
                   qrels_source)
    # Offline, `datasets` reads each config's newest cached copy: name every commit read where they differ.
    commits = {source.split(":")[1] for source in (corpus_source, queries_source, qrels_source)}
    source = qrels_source if len(commits) == 1 else "; ".join((corpus_source, queries_source, qrels_source))
    return beir_task(task.name, corpus, queries, qrels, source=source, qrels_source=qrels_source, option=option)


def _corpus(rows: Iterable[tuple[str, dict[str, Any]]], source: str) -> dict[str, dict[str, str]]:
    """BEIR corpus rows as {doc_id: {title, text}}. An empty text is kept (BEIR and mteb keep it: TREC-COVID
    has title-only documents); a missing or non-string one is an error."""
    corpus: dict[str, dict[str, str]] = {}
    for where, row in rows:
        doc_id, title, text = corpus_row(row, where, corpus, source)
        corpus[doc_id] = {"title": title, "text": text}
    if not corpus:
        raise UsageError(f"{source}: no rows; the file is empty")
    return corpus


def _queries(rows: Iterable[tuple[str, dict[str, Any]]], source: str) -> dict[str, str]:
    queries: dict[str, str] = {}
    for where, row in rows:
        queries[id_field(row, where, queries, source)] = text_field(row, "text", where)
    if not queries:
        raise UsageError(f"{source}: no rows; the file is empty")
    return queries


def _qrels_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, [query-id, corpus-id, score]) of a BEIR qrels file, its header line skipped."""
    for line_no, line in read_lines(path):
        fields = line.split("\t")
        if line_no == 1 and fields[:2] == ["query-id", "corpus-id"]:
            continue
        if len(fields) != 3:
            raise UsageError(f"{path}:{line_no}: expected 3 tab-separated fields (query-id, corpus-id, score), "
                             f"got {len(fields)}; fix the line")
        yield line_no, fields


def _qrels(rows: Iterable[tuple[str, list[Any]]], source: str) -> dict[str, dict[str, int]]:
    """Judgements as {qid: {doc_id: grade}}. A pair judged twice keeps its last grade, as BEIR's loader does;
    two different grades for one pair are reported."""
    qrels: dict[str, dict[str, int]] = {}
    conflicts: list[str] = []
    for where, (qid, doc_id, grade) in rows:
        if qid is None or doc_id is None:
            raise UsageError(f"{where}: a judgement needs a query-id and a corpus-id; fix or remove the row")
        qid, doc_id = sources.as_id(qid, where, "query-id"), sources.as_id(doc_id, where, "corpus-id")
        grade = relevance_grade(grade, where)
        previous = qrels.setdefault(qid, {}).get(doc_id)
        if previous is not None and previous != grade:
            conflicts.append(f"{where} ({qid}, {doc_id}: {previous} then {grade})")
        qrels[qid][doc_id] = grade
    if not qrels:
        raise UsageError(f"{source}: no judgements; the file is empty")
    if conflicts:
        logger.warning("%s: %d pair(s) judged twice with different grades, e.g. %s; the last grade is kept, "
                       "as BEIR keeps it", source, len(conflicts), "; ".join(conflicts[:2]))
    return qrels


def relevance_grade(value: Any, where: str) -> int:
    """A relevance grade as trec_eval reads it: an integer, also when written as an integral float ("1.0",
    1.0: mteb's hub copies store grades as float64). 1.5 is no grade."""
    try:
        number = float(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None
    except ValueError:
        number = None
    if number is None or not math.isfinite(number) or number != int(number):
        raise UsageError(f"{where}: score {value!r} is not an integer relevance grade; fix the line")
    if not GRADE_RANGE[0] <= number <= GRADE_RANGE[1]:  # trec_eval would wrap it round without a word
        raise UsageError(f"{where}: score {value!r} is out of trec_eval's range for a grade "
                         f"({GRADE_RANGE[0]}..{GRADE_RANGE[1]}); fix the line")
    return int(number)


GRADE_RANGE = (-(2**31), 2**31 - 1)  # trec_eval's grades are C ints (mteb casts to int32)


def beir_task(name: str, corpus: Mapping[str, dict[str, str]], queries: dict[str, str],
              qrels: dict[str, dict[str, int]], source: str, qrels_source: str,
              option: str = "--retrieval-split") -> RetrievalData:
    """The task BEIR's evaluation scores: the judged queries, with the judgements kept as they are.

    Judgements naming a document missing from the corpus stay (trec_eval counts that document in the ideal
    ranking, so such a query cannot reach nDCG 1); judgements of a query missing from the queries cannot be
    searched, so that query is not scored. Both are counted, warned about and recorded, not refused.
    """
    missing_docs = [(qid, doc_id) for qid, judged in qrels.items() for doc_id in judged if doc_id not in corpus]
    missing_queries = [qid for qid in qrels if qid not in queries]
    judgements_without_query = sum(len(qrels[qid]) for qid in missing_queries)
    if missing_docs or missing_queries:
        said = []
        if missing_docs:
            said.append(f"{len(missing_docs)} judgement(s) name a document not in the corpus (e.g. "
                        + ", ".join(f"{doc_id!r} for query {qid!r}" for qid, doc_id in missing_docs[:2])
                        + "), kept as BEIR and pytrec_eval keep them: they count in the ideal ranking")
        if missing_queries:
            said.append(f"{judgements_without_query} judgement(s) name a query not in the queries (e.g. "
                        + ", ".join(repr(qid) for qid in missing_queries[:2]) + "), which cannot be scored")
        logger.warning("%s: %s", name, "; ".join(said))
    judged = {qid: queries[qid] for qid in qrels if qid in queries}
    kept = {qid: qrels[qid] for qid in judged}
    if not any(grade > 0 for judgements in kept.values() for grade in judgements.values()):
        raise UsageError(f"{qrels_source}: no judgement of a known query has a grade above 0, so nothing can be "
                         f"scored; check the qrels split ({option}) and that its query ids are in the queries")
    untitled = corpus.empty if isinstance(corpus, FileCorpus) else \
        sum(1 for doc in corpus.values() if not (doc["title"] + doc["text"]).strip())
    if untitled:
        logger.warning("%s: %d document(s) have neither title nor text; kept, encoded as empty", name, untitled)
    checks = {"judgements_without_document": len(missing_docs),
              "judgements_without_query": judgements_without_query,
              "identical_ids_ignored": sum(1 for qid in judged if qid in corpus), "empty_documents": untitled}
    logger.info("loaded %d documents, %d judged queries from %s", len(corpus), len(judged), source)
    return RetrievalData(corpus, judged, kept, source=source, checks=checks)


def correlatable(pairs: STSPairs) -> STSPairs:
    """`pairs`, if a correlation with their gold scores can be computed (two pairs, two different scores)."""
    if len(set(pairs.scores)) < 2:
        raise UsageError(f"{pairs.source}: a correlation needs at least two pairs with different gold scores; "
                         f"this split has {len(pairs)} pair(s) and {len(set(pairs.scores))} distinct score(s)")
    return pairs


def load_eval_sets(sts_tasks: tuple[str, ...], retrieval_tasks: tuple[str, ...], data_dir: Path | None,
                   retrieval_split: str | None = None) -> tuple[dict[str, STSPairs], dict[str, RetrievalData]]:
    """Every evaluation set a run scores (STS test splits, retrieval tasks by name), loaded and checked once."""
    sts_sets = {name: correlatable(load_sts(name, "test", data_dir)) for name in sts_tasks}
    retrieval_sets = {retrieval_task(spec).name: load_retrieval(spec, data_dir, retrieval_split)
                      for spec in retrieval_tasks}
    return sts_sets, retrieval_sets


def data_checks(retrieval_sets: dict[str, RetrievalData]) -> dict[str, dict[str, int]]:
    """What loading each retrieval task tolerated, for the run record."""
    return {name: data.checks for name, data in retrieval_sets.items()}
