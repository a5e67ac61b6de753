"""Hard negatives for training for search, mined with the raw model by sentence-transformers' rules
(`mine_hard_negatives` with "top" sampling and a relative margin) over a corpus encoded to disk.

A candidate is skipped as a likely false negative when it is judged relevant to the query (or holds a relevant
document's text, or the query's own), or when it scores within `--negative-margin` (relative) of the query's least
similar relevant document: NV-Retriever's "TopK-PercPos" rule (Moreira et al. 2024), 0.05 by default, i.e. a
negative scores at most 95% of the positive.

Why not `mine_hard_negatives` itself: it holds the corpus text, all its vectors and faiss's copy of them in memory
(about 60 GB for MS MARCO's 8.8M passages at 768 dimensions). Here the corpus is read by offsets, encoded by
search/store.encode_to_disk (the one resumable encode, shared with `index` and `evaluate`, cached in the run folder)
and searched slice by slice; the same rules then pick the same negatives (tests/test_retrieval_training.py checks
it against `mine_hard_negatives`). One difference: sentence-transformers first merges documents of the same text,
and here each takes a place among a query's candidates, so a corpus with many duplicates can leave a query fewer
candidates (it then gets random negatives, counted in the record).
"""

from __future__ import annotations

import contextlib
import logging
import random
import tempfile
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from sentence_transformers import SentenceTransformer

from sbert_repro.config.training import TrainConfig
from sbert_repro.data.corpus import corpus_sha256, corpus_texts, document_text
from sbert_repro.data.retrieval_pairs import RetrievalPairs
from sbert_repro.errors import UsageError
from sbert_repro.model.encoder import encode, resolve_prompts
from sbert_repro.runs.environment import world_size
from sbert_repro.search.faiss_index import exact_search_in_slices
from sbert_repro.search.store import PROGRESS, check_room, encode_to_disk, encoding_pool

logger = logging.getLogger(__name__)

Corpus = Mapping[str, dict[str, str]]
MINING_CHUNK = 8192  # rows encoded and cached at a time (times the processes of a pool)


def mine_negatives(pairs: RetrievalPairs, corpus: Corpus, model: SentenceTransformer, config: TrainConfig,
                   cache_folder: Path | None, model_identity: dict[str, Any] | None = None
                   ) -> tuple[RetrievalPairs, dict[str, Any]]:
    """`config.hard_negatives` negatives per pair, mined with `model` (the raw one) over `corpus` (BEIR's
    {doc_id: {"title", "text"}}, which `pairs.document_ids` name); returns the pairs with their negatives, and what
    was mined for the record. The corpus's vectors are cached in `cache_folder` (with `model_identity`, what makes
    the model's vectors: a resumed run continues the encode there, another model or corpus is refused). A pair for
    which too few candidates pass the rules gets random documents of the corpus (none relevant to its query) in the
    places left: every row then has the same columns, and no leftover batch of a few rows trains on nothing."""
    if len(pairs.document_ids) != len(pairs):
        raise ValueError("mining needs the corpus id of each pair's document (RetrievalPairs.document_ids)")
    prompts = resolve_prompts(model, config)  # as the task is scored: each query and document with its prompt
    queries = list(dict.fromkeys(pairs.queries))
    relevant_ids: dict[str, set[str]] = {query: set() for query in queries}
    relevant_texts: dict[str, set[str]] = {query: set() for query in queries}
    for query, document, doc_id in zip(pairs.queries, pairs.documents, pairs.document_ids, strict=True):
        relevant_ids[query].add(doc_id)
        relevant_texts[query].add(document)
    ids = list(corpus)
    judged = set().union(*relevant_ids.values())
    row_of = {doc_id: row for row, doc_id in enumerate(ids) if doc_id in judged}
    with contextlib.ExitStack() as stack:
        folder = cache_folder or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mining-")))
        vectors = _corpus_vectors(model, corpus, folder, config, prompts.document, model_identity)
        query_vectors, _ = encode(model, queries, config.eval_batch_size, "mining queries", role="query",
                                  prompt=prompts.query)
        # As many candidates as sentence-transformers takes with a margin: 10 a negative, and room for the positives
        most_relevant = max(len(held) for held in relevant_ids.values())
        depth = min(len(ids), 10 * config.hard_negatives + 2 * most_relevant + 1)
        scores, rows, _ = exact_search_in_slices(vectors, query_vectors, depth)
        # the margin is taken from the least similar relevant document
        positive = [min(float(query_vectors[q] @ vectors[row_of[doc_id]]) for doc_id in relevant_ids[query])
                    for q, query in enumerate(queries)]
        del vectors
    found = {query: _pick(corpus, ids, query, relevant_ids[query], relevant_texts[query], scored, hits,
                          positive[q] - abs(positive[q]) * config.negative_margin, config.hard_negatives)
             for q, (query, scored, hits) in enumerate(zip(queries, scores, rows, strict=True))}
    draw = random.Random(config.validation_seed)
    negatives, filled = [], 0
    for query in pairs.queries:
        hard = found[query]
        if not hard:
            hard, filled = _random_negatives(corpus, ids, relevant_ids[query], relevant_texts[query],
                                             config.hard_negatives, draw), filled + 1
        negatives.append(hard)
    if filled:
        logger.warning("hard negatives: %d of %d pairs had fewer than %d candidates that pass the rules (outside the "
                       "margin, not relevant); they got random documents of the corpus instead", filled, len(pairs),
                       config.hard_negatives)
    stats = {"per_pair": config.hard_negatives, "relative_margin": config.negative_margin, "sampling": "top",
             "excluded": "documents judged relevant to the query or holding a relevant document's text or the "
                         "query's, and candidates within the margin",
             "mined_with": "the raw model (baseline)",
             "index": "exact inner product over the corpus's vectors on disk (faiss.knn, slice by slice)",
             "pairs_mined": len(pairs) - filled, "pairs_given_random_negatives": filled}
    return RetrievalPairs(pairs.queries, pairs.documents, pairs.source, negatives, pairs.document_ids), stats


def _corpus_vectors(model: SentenceTransformer, corpus: Corpus, folder: Path, config: TrainConfig,
                    prompt: str | None, model_identity: dict[str, Any] | None) -> np.memmap:
    """The corpus's normalised vectors in folder/embeddings.f32, encoded a chunk at a time (continued where an
    interrupted run stopped, if of the same corpus and model), through sentence-transformers' pool where several
    GPUs are (under torchrun the main process mines alone, while the others hold their GPUs)."""
    identity = {"corpus_sha256": corpus_sha256(corpus), **(model_identity or {}),
                "max_seq_length": model.max_seq_length, "precision": config.precision,
                **({"document_prompt": prompt} if prompt else {})}
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / PROGRESS).is_file():  # a resumed encode has its file's room reserved already
        check_room(folder, {"the corpus's vectors": 4 * model.get_embedding_dimension() * len(corpus)},
                   f"mining hard negatives in {folder}")
    pool_of = encoding_pool(model, 1, config.device) if world_size() == 1 else contextlib.nullcontext(None)
    with pool_of as pool:
        return encode_to_disk(model, folder, len(corpus), identity, config.eval_batch_size, MINING_CHUNK, pool,
                              prompt=prompt, texts=partial(corpus_texts, corpus), description="mining corpus")


def _pick(corpus: Corpus, ids: list[str], query: str, relevant_ids: set[str], relevant_texts: set[str],
          scores: np.ndarray, rows: np.ndarray, threshold: float, count: int) -> list[str]:
    """The first `count` of a query's candidates (in score order) that pass the rules, as texts; none when fewer
    pass. Only candidates past the id and score rules are read from the corpus."""
    chosen: list[str] = []
    for score, row in zip(scores, rows, strict=True):
        if len(chosen) == count:
            break
        if row < 0 or ids[row] in relevant_ids or score > threshold:
            continue
        text = _text(corpus, ids[row])
        # a duplicate of a relevant document, or the query itself, under another id
        if text not in relevant_texts and text != query and text not in chosen:
            chosen.append(text)
    return chosen if len(chosen) == count else []


def _random_negatives(corpus: Corpus, ids: list[str], relevant_ids: set[str], relevant_texts: set[str], count: int,
                      draw: random.Random) -> list[str]:
    """`count` distinct documents of `corpus` drawn at random, none of them relevant to the query."""
    chosen: list[str] = []
    for _ in range(100 * count):
        if len(chosen) == count:
            break
        doc_id = ids[draw.randrange(len(ids))]
        text = _text(corpus, doc_id) if doc_id not in relevant_ids else None
        if text is not None and text not in relevant_texts and text not in chosen:
            chosen.append(text)
    if len(chosen) < count:
        raise UsageError(f"--hard-negatives {count}: the corpus has too few documents that are not relevant to a "
                         "training query; give fewer")
    return chosen


def _text(corpus: Corpus, doc_id: str) -> str:
    document = corpus[doc_id]
    return document_text(document["title"], document["text"])
