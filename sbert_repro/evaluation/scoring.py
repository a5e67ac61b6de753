"""Evaluation: encode with the model, score STS pairs by cosine, retrieve through a FAISS index; also a
cross-encoder's STS scores (score_sts_tasks) and mteb's own (score_with_mteb).

Scores come back keyed "task/metric" (x100, unrounded) and throughput keyed "task/<what>_per_s" (and an
approximate index's cost "task/approx_<what>"), so a run record holds baseline and fine-tuned results in
the same shape and the report can line them up. With `dims` (evaluate --dims, finetune --matryoshka-dims) every
task is also scored with its vectors cut to each dimension d and re-normalised, keyed "task@d/metric" and
"task@d/<speed>" (retrieval adds bytes_per_vector); the full vectors keep the plain keys. With `postprocess`
(evaluate --postprocess) every task's vectors pass through a transform fitted without training
(model/transforms.py) before they are scored: the scores keep their keys, and the record says which transform. With
`rerank` (evaluate --rerank) each retrieval task's exact search is also re-ranked by a cross-encoder
(evaluation/reranking.py): the same metrics after it, keyed "task/rerank_<metric>", and its added time,
"task/rerank_ms_per_query". With `prompts`, queries and documents are encoded with them (STS sentences with neither);
with `runs`, each retrieval task's exact search of the full vectors is kept as a TaskRun (evaluation/run_files.py).
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

from sbert_repro.config.checks import parse_postprocess
from sbert_repro.config.encoding import EvaluateConfig
from sbert_repro.data.corpus import corpus_texts
from sbert_repro.data.hub import hub_error_reason
from sbert_repro.data.loaders import RetrievalData, STSPairs
from sbert_repro.data.tasks import RETRIEVAL_TASKS, STS_TASKS, TABLE1_STS_TASKS
from sbert_repro.errors import UsageError
from sbert_repro.evaluation import metrics
from sbert_repro.evaluation.metrics import RETRIEVAL_DEPTH
from sbert_repro.evaluation.mteb_results import mteb_model_name
from sbert_repro.evaluation.postprocessing import Postprocessing
from sbert_repro.evaluation.reranking import Reranking, reranked_scores
from sbert_repro.evaluation.run_files import TaskRun
from sbert_repro.evaluation.truncation import check_dims_fit, each_dimension, task_key
from sbert_repro.model.cross_encoder import PairScorer
from sbert_repro.model.encoder import Prompts, encode
from sbert_repro.model.transforms import (
    apply_and_normalise,
    check_postprocess_fits,
)
from sbert_repro.search.faiss_index import (
    EXACT,
    RECALL_DEPTH,
    Knobs,
    build_and_compare,
    check_index_before_encoding,
    exact_search_in_slices,
)
from sbert_repro.search.store import encode_to_disk

logger = logging.getLogger(__name__)


def score_sts(model: SentenceTransformer, pairs: STSPairs, batch_size: int, name: str = "sts"
              ) -> tuple[dict[str, float], float]:
    """Spearman and Pearson x100 of cosine(u, v) against gold, and encode sentences/s."""
    by_dimension, per_second = score_sts_at_dims(model, pairs, batch_size, name, ())
    return by_dimension[None], per_second


def score_sts_at_dims(model: SentenceTransformer, pairs: STSPairs, batch_size: int, name: str,
                      dims: tuple[int, ...], postprocess: Postprocessing | None = None
                      ) -> tuple[dict[int | None, dict[str, float]], float]:
    """score_sts's scores for the full vectors (under None) and for the vectors cut to each of `dims` below the
    full size (under d), from one encoding; and encode sentences/s. With `postprocess`, of the transformed vectors."""
    # Each distinct sentence is encoded once: STS sets repeat sentences across pairs.
    unique = list(dict.fromkeys(pairs.sentences1 + pairs.sentences2))
    # A transform is fitted on the vectors as the model gives them, not on unit vectors (BERT-whitening's setting).
    embeddings, per_second = encode(model, unique, batch_size, description=name, normalize=postprocess is None)
    if postprocess is not None:
        embeddings = apply_and_normalise(postprocess.transform(name, embeddings, "test sentences"), embeddings)
    return {dim: sts_scores(vectors, unique, pairs, name) for dim, vectors in each_dimension(embeddings, dims)}, \
        per_second


def sts_scores(embeddings: np.ndarray, sentences: list[str], pairs: STSPairs, name: str = "sts") -> dict[str, float]:
    """Spearman and Pearson x100 of cosine(u, v) against gold, for `embeddings` of `sentences` (in that order),
    which hold every sentence of `pairs`."""
    row = {sentence: i for i, sentence in enumerate(sentences)}
    u = embeddings[[row[s] for s in pairs.sentences1]]
    v = embeddings[[row[s] for s in pairs.sentences2]]
    return correlations(metrics.cosine_similarities(u, v), pairs.scores, name)


def correlations(predicted: np.ndarray | list[float], gold: list[float], task: str) -> dict[str, float]:
    """Spearman and Pearson x100 of `predicted` against gold. Where they would not be numbers (a model whose vectors
    are all alike gives every pair one similarity, and a correlation of NaN), the run stops here, naming the task:
    a NaN would be no score, and no JSON."""
    predicted = np.asarray(predicted, dtype=np.float64)
    if not np.isfinite(predicted).all():
        why = "some similarities are not numbers (the model's vectors hold NaN or infinities)"
    elif np.ptp(predicted) == 0:
        why = "every pair gets the same similarity (the model's vectors are constant: all-zero weights, say)"
    else:
        scores = {"spearman": 100 * metrics.spearman(predicted, gold),
                  "pearson": 100 * metrics.pearson(predicted, gold)}
        if all(np.isfinite(value) for value in scores.values()):
            return scores
        why = "the correlation is not a number"
    raise UsageError(f"{task}: cannot be scored, since {why}; check the model's weights (sbert-repro geometry "
                     "measures its vectors)")


def score_retrieval(model: SentenceTransformer, data: RetrievalData, batch_size: int, name: str = "retrieval",
                    compare: EvaluateConfig | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """nDCG@10, MRR@10, Recall@1/10/100, MAP@100 (x100) through an exact FAISS index, and throughput.

    With `compare` naming an approximate index (--index), the same metrics through that index too
    ("approx_<metric>"), its recall@10 against exact search, its build time, size and queries/s.
    """
    scores, speeds = score_retrieval_at_dims(model, data, batch_size, name, compare, ())
    return scores[None], speeds[None]


@dataclass(frozen=True)
class OnDisk:
    """Where scoring encodes each retrieval task's corpus: folder/<task>/embeddings.f32, `chunk_size` rows at a time
    (search/store.encode_to_disk, through sentence-transformers' `pool` where several GPUs are), searched slice by
    slice and deleted once the task is scored. Only the vectors, memory-mapped, grow with the corpus."""

    folder: Path
    chunk_size: int = 8192
    pool: dict | None = None


def encode_task(model: SentenceTransformer, data: RetrievalData, batch_size: int, name: str, normalize: bool = True,
                prompts: Prompts | None = None, on_disk: OnDisk | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """A retrieval task's documents (title and text, in corpus order) and queries (in their order) encoded, each
    with its prompt (None: the model's own), and documents encoded per second. With `on_disk`, the documents are
    encoded chunk by chunk into a memory-mapped file, their text read a chunk at a time."""
    prompts = prompts or Prompts()
    if on_disk is None:
        doc_embeddings, encode_per_s = encode(model, corpus_texts(data.corpus, 0, len(data.corpus)), batch_size,
                                              f"{name} corpus", normalize=normalize, role="document",
                                              prompt=prompts.document)
    else:
        start = time.perf_counter()
        # never resumed: what an interrupted scoring left there may be another model's rows
        shutil.rmtree(on_disk.folder / name, ignore_errors=True)
        (on_disk.folder / name).mkdir(parents=True)
        doc_embeddings = encode_to_disk(model, on_disk.folder / name, len(data.corpus), {"task": name}, batch_size,
                                        on_disk.chunk_size, on_disk.pool, normalize=normalize, prompt=prompts.document,
                                        texts=partial(corpus_texts, data.corpus), description=f"{name} corpus")
        encode_per_s = len(data.corpus) / max(time.perf_counter() - start, 1e-9)
    query_embeddings, _ = encode(model, list(data.queries.values()), batch_size, f"{name} queries",
                                 normalize=normalize, role="query", prompt=prompts.query)
    return doc_embeddings, query_embeddings, encode_per_s


def score_retrieval_at_dims(model: SentenceTransformer, data: RetrievalData, batch_size: int, name: str,
                            compare: EvaluateConfig | None, dims: tuple[int, ...],
                            postprocess: Postprocessing | None = None, rerank: Reranking | None = None,
                            prompts: Prompts | None = None, kept: list[TaskRun] | None = None,
                            on_disk: OnDisk | None = None
                            ) -> tuple[dict[int | None, dict[str, float]], dict[int | None, dict[str, float]]]:
    """score_retrieval's scores and speeds for the full vectors (under None) and, through an exact FAISS index of
    the vectors cut to each of `dims` below the full size, under d, with that index's queries/s and bytes per
    vector; documents and queries are encoded once. The approximate index (`compare`) is built at full size only.
    With `postprocess`, documents and queries pass through one transform, fitted on the documents (the corpus is
    the task's own sentences: what an index would hold). With `rerank`, the full vectors' search re-ranked too; with
    `kept`, the full vectors' exact search appended to it. With `on_disk`, the documents' vectors are encoded to
    disk and searched there (encode_task)."""
    raw = postprocess is not None  # a transform is fitted on the vectors as the model gives them
    doc_embeddings, query_embeddings, encode_per_s = encode_task(model, data, batch_size, name, normalize=not raw,
                                                                 prompts=prompts, on_disk=on_disk)
    if postprocess is not None:
        transform = postprocess.transform(name, doc_embeddings, "corpus documents")
        doc_embeddings = apply_and_normalise(transform, doc_embeddings)
        query_embeddings = apply_and_normalise(transform, query_embeddings)
    queries_at = dict(each_dimension(query_embeddings, dims))
    scores, speeds = {}, {}
    for dim, docs in each_dimension(doc_embeddings, dims):
        full = dim is None
        scores[dim], speed = search_and_score(docs, queries_at[dim], data, compare if full else None,
                                              rerank if full else None, kept if full else None)
        speeds[dim] = {"corpus_encode_per_s": encode_per_s, **speed} if dim is None else speed
        if dims:  # an exact index stores each vector as float32: the cost a shorter vector saves
            speeds[dim]["bytes_per_vector"] = float(docs.shape[1] * np.dtype(np.float32).itemsize)
    return scores, speeds


def search_and_score(doc_embeddings: np.ndarray, query_embeddings: np.ndarray, data: RetrievalData,
                     compare: EvaluateConfig | None = None, rerank: Reranking | None = None,
                     kept: list[TaskRun] | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """score_retrieval's search and metrics, for embeddings of data.corpus and data.queries (in their order); the
    exact search appended to `kept` where given."""
    doc_ids, query_ids = list(data.corpus), list(data.queries)
    # One deeper than the metrics look: a query's own document (same id) is dropped before the cut.
    depth = RETRIEVAL_DEPTH + 1
    # In slices: vectors on disk are read a slice at a time, never copied whole into a faiss index.
    similarities, rows, search_per_s = exact_search_in_slices(doc_embeddings, query_embeddings, depth)
    scores = _retrieval_scores(similarities, rows, doc_ids, query_ids, data, kept)
    speed = {"search_queries_per_s": search_per_s}
    if rerank is not None:
        # Candidates as deep as the re-ranking looks, when that is past the metrics' depth.
        deep = (similarities, rows) if rerank.top_k < depth else \
            exact_search_in_slices(doc_embeddings, query_embeddings, rerank.top_k + 1)[:2]
        candidates = retrieval_run(*deep, doc_ids, query_ids, max(rerank.top_k, RETRIEVAL_DEPTH))
        reranked, speed["rerank_ms_per_query"] = reranked_scores(
            {qid: list(ranked) for qid, ranked in candidates.items()}, data, rerank)
        scores.update({f"rerank_{metric}": value for metric, value in reranked.items()})
    if compare is not None and compare.index != EXACT:
        approximate = build_and_compare(compare.index, doc_embeddings, query_embeddings, rows, search_per_s,
                                        compare.index_train_size, compare.seed,
                                        [Knobs(compare.nprobe, compare.ef_search)])
        [comparison] = approximate.comparisons
        approximate_scores = _retrieval_scores(comparison.scores, comparison.rows, doc_ids, query_ids, data)
        scores.update({f"approx_{metric}": value for metric, value in approximate_scores.items()})
        scores[f"approx_recall@{RECALL_DEPTH}_vs_exact"] = 100 * comparison.measured[f"recall@{RECALL_DEPTH}_vs_exact"]
        speed.update({"approx_search_queries_per_s": comparison.measured["queries_per_s"],
                      "approx_build_s": approximate.build_s, "approx_bytes_per_vector": approximate.bytes_per_vector})
    return scores, speed


def retrieval_run(similarities: np.ndarray, rows: np.ndarray, doc_ids: list[str], query_ids: list[str],
                  depth: int = RETRIEVAL_DEPTH) -> dict[str, dict[str, float]]:
    """FAISS's answer as a trec_eval run {qid: {doc_id: score}}: each query's top `depth` once a document
    whose id is the query's own is dropped (BEIR's evaluation drops it by default: ArguAna's and Quora's queries
    are documents of their corpus, and would find themselves)."""
    run: dict[str, dict[str, float]] = {}
    for qid, scored, hits in zip(query_ids, similarities, rows, strict=True):
        ranked = [(doc_ids[row], float(score)) for score, row in zip(scored, hits, strict=True)
                  if row >= 0 and doc_ids[row] != qid]
        run[qid] = dict(ranked[:depth])  # in FAISS's order
    return run


def search_candidates(model: SentenceTransformer, data: RetrievalData, batch_size: int, depth: int, name: str,
                      prompts: Prompts | None = None) -> dict[str, list[str]]:
    """Each query's top `depth` document ids by the model's exact search, in its order (its own id dropped): the
    first stage whose results a re-ranker re-scores."""
    doc_embeddings, query_embeddings, _ = encode_task(model, data, batch_size, name, prompts=prompts)
    similarities, rows, _ = exact_search_in_slices(doc_embeddings, query_embeddings, depth + 1)
    run = retrieval_run(similarities, rows, list(data.corpus), list(data.queries), depth)
    return {qid: list(ranked) for qid, ranked in run.items()}


def _retrieval_scores(similarities: np.ndarray, rows: np.ndarray, doc_ids: list[str], query_ids: list[str],
                      data: RetrievalData, kept: list[TaskRun] | None = None) -> dict[str, float]:
    """The retrieval metrics (x100) of FAISS's answer, scored by trec_eval (pytrec_eval); the run and its per-query
    scores appended to `kept` where given."""
    return run_scores(retrieval_run(similarities, rows, doc_ids, query_ids), data, kept)


def run_scores(run: dict[str, dict[str, float]], data: RetrievalData, kept: list[TaskRun] | None = None
               ) -> dict[str, float]:
    """The retrieval metrics (x100) of a run of the task `data` (any retriever's: the identical-id rule already
    applied), scored by trec_eval (pytrec_eval); the run and its per-query scores appended to `kept` where given."""
    per_query = metrics.per_query_scores(run, data.qrels)  # once: the mean below and the kept scores share it
    if kept is not None:
        kept.append(TaskRun(run, {qid: {name: 100 * value for name, value in scored.items()}
                                  for qid, scored in per_query.items()}))
    return {metric: 100 * value for metric, value in metrics.mean_scores(per_query).items()}


def evaluate_tasks(model: SentenceTransformer, sts_sets: dict[str, STSPairs],
                   retrieval_sets: dict[str, RetrievalData], batch_size: int, compare: EvaluateConfig | None = None,
                   dims: tuple[int, ...] = (), postprocess: Postprocessing | None = None,
                   rerank: Reranking | None = None, prompts: Prompts | None = None,
                   runs: dict[str, TaskRun] | None = None, on_disk: OnDisk | None = None
                   ) -> tuple[dict[str, float], dict[str, float]]:
    """Score every loaded task: ({"task/metric": value x100}, {"task/<speed>": per second}), and with `dims`
    at each of those dimensions too ("task@d/metric", "task@d/<speed>"). With `postprocess`, of the transformed
    vectors (postprocess.fitted then holds each task's transform). With `runs`, each retrieval task's exact search
    (full vectors) under its name.

    STS sets are the tasks' test splits. "sts-avg/spearman" ("sts-avg@d/spearman") is the mean over the paper's
    seven Table 1 tasks, given only when all seven were scored (a missing task is never counted as 0).
    """
    scores: dict[str, float] = {}
    speeds: dict[str, float] = {}
    for name, pairs in sts_sets.items():
        start = time.perf_counter()
        by_dimension, per_second = score_sts_at_dims(model, pairs, batch_size, name, dims, postprocess)
        for dim, task_scores in by_dimension.items():
            scores.update({f"{task_key(name, dim)}/{metric}": value for metric, value in task_scores.items()})
        speeds[f"{name}/encode_per_s"] = per_second
        speeds[f"{name}/evaluation_s"] = time.perf_counter() - start  # what mteb's results call evaluation_time
    for dim in (None, *dims):
        keys = [f"{task_key(name, dim)}/spearman" for name in TABLE1_STS_TASKS]
        if all(key in scores for key in keys):
            scores[f"{task_key('sts-avg', dim)}/spearman"] = float(np.mean([scores[key] for key in keys]))
    for name, data in retrieval_sets.items():
        kept: list[TaskRun] = []
        start = time.perf_counter()
        task_scores, task_speeds = score_retrieval_at_dims(model, data, batch_size, name, compare, dims, postprocess,
                                                           rerank, prompts, kept, on_disk)
        if on_disk is not None:
            shutil.rmtree(on_disk.folder / name)
            if on_disk.folder.is_dir() and not any(on_disk.folder.iterdir()):
                on_disk.folder.rmdir()
        if runs is not None:
            runs[name] = kept[0]
        for dim in task_scores:
            scores.update({f"{task_key(name, dim)}/{metric}": value for metric, value in task_scores[dim].items()})
            speeds.update({f"{task_key(name, dim)}/{what}": value for what, value in task_speeds[dim].items()})
        speeds[f"{name}/evaluation_s"] = time.perf_counter() - start
    return scores, speeds


def check_options_fit(config: EvaluateConfig, dim: int, retrieval_sets: dict[str, RetrievalData]) -> None:
    """What evaluate's options ask of a model of `dim` dimensions, checked once it is built and before anything is
    encoded: --dims and --postprocess fit the dimension, and faiss can build --index (with its --nprobe and
    --ef-search) over each retrieval task's corpus, for the vectors it would hold (whiten-K's K dimensions)."""
    check_dims_fit(config.eval_dims, dim, "--dims")
    check_postprocess_fits(config.postprocess, dim)
    if config.index == EXACT:
        return
    postprocess = parse_postprocess(config.postprocess) if config.postprocess else None
    index_dim = (postprocess.size or dim) if postprocess and postprocess.method == "whiten" else dim
    for data in retrieval_sets.values():
        check_index_before_encoding(config.index, index_dim, len(data.corpus), config.index_train_size,
                                    config.nprobe, config.ef_search)


def score_with_mteb(model: SentenceTransformer, task_names: tuple[str, ...], output_folder: Path, model_name: str
                    ) -> tuple[dict[str, float], str | None]:
    """Score through mteb's own API ({"task/mteb_main_score": x100}); its result files go to output_folder, under
    the model's name (mteb_model_name of --model `model_name`). Returns the scores, and mteb's error where it
    failed (None where it did not): a run keeps its own scores either way.

    mteb downloads its datasets from the Hugging Face hub at its pinned revisions, so this needs the hub.
    """
    import mteb
    from mteb.cache import ResultCache

    declared = {**{name: task.mteb_name for name, task in STS_TASKS.items()},
                **{name: task.mteb_name for name, task in RETRIEVAL_TASKS.items()}}
    ours = {declared[name]: name for name in task_names if declared.get(name)}  # stsb-retrieval is ours alone
    model.model_card_data.model_name = mteb_model_name(model_name)  # what mteb names the model and its folder
    try:
        tasks = mteb.get_tasks(tasks=list(ours))
        result = mteb.evaluate(model, tasks, cache=ResultCache(output_folder), overwrite_strategy="always")
    except Exception as error:  # noqa: BLE001 - mteb's own downloads and checks: a failure there is not ours
        said = str(error).strip().splitlines()[0] if str(error).strip() else ""
        error_line = f"{type(error).__name__}: {hub_error_reason(error) or said}"
        logger.warning("--mteb failed (%s); our own scores are kept, and the record holds mteb's error", error_line)
        return {}, error_line
    return {f"{ours[task_result.task_name]}/mteb_main_score": 100 * task_result.get_score()
            for task_result in result.task_results}, None


def score_sts_tasks(score_pairs: PairScorer, sts_sets: dict[str, STSPairs]
                    ) -> tuple[dict[str, float], dict[str, float]]:
    """As evaluate_tasks scores a bi-encoder, keyed alike: "task/spearman" and "task/pearson" (x100) of the
    predicted scores against gold, "sts-avg/spearman" over the seven Table 1 tasks when all were scored, and
    "task/pairs_per_s" (every pair is a forward pass)."""
    scores, speeds = {}, {}
    for name, pairs in sts_sets.items():
        start = time.perf_counter()
        predicted = score_pairs(list(zip(pairs.sentences1, pairs.sentences2, strict=True)))
        speeds[f"{name}/pairs_per_s"] = len(pairs) / max(time.perf_counter() - start, 1e-9)
        scores.update({f"{name}/{metric}": value for metric, value in correlations(predicted, pairs.scores,
                                                                                      name).items()})
    keys = [f"{name}/spearman" for name in TABLE1_STS_TASKS]
    if all(key in scores for key in keys):
        scores["sts-avg/spearman"] = float(np.mean([scores[key] for key in keys]))
    return scores, speeds
