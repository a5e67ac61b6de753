"""Hard negatives for training for search, mined with the raw model through FAISS by sentence-transformers'
`mine_hard_negatives` (`use_faiss=True`). A candidate is skipped as a likely false negative when it is judged relevant
to the query, or when it scores within `--negative-margin` (relative) of the query's least similar relevant document:
NV-Retriever's "TopK-PercPos" rule (Moreira et al. 2024), 0.05 by default, i.e. a negative scores at most 95% of the
positive."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from datasets import Dataset
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import mine_hard_negatives

from sbert_repro.config.training import TrainConfig
from sbert_repro.data.retrieval_pairs import RetrievalPairs
from sbert_repro.errors import UsageError
from sbert_repro.model.encoder import resolve_prompts
from sbert_repro.runs.environment import world_size
from sbert_repro.search.store import pool_devices

logger = logging.getLogger(__name__)


def mine_negatives(pairs: RetrievalPairs, corpus: list[str], model: SentenceTransformer, config: TrainConfig,
                   cache_folder: Path | None) -> tuple[RetrievalPairs, dict[str, Any]]:
    """`config.hard_negatives` negatives per pair, mined with `model` (the raw one) over `corpus` through a FAISS
    index; returns the pairs with their negatives, and what was mined for the record. A pair for which too few
    candidates pass the rules gets random documents of the corpus (none relevant to its query) in the places left:
    every row then has the same columns, and no leftover batch of a few rows trains on nothing."""
    dataset = Dataset.from_dict({"query": pairs.queries, "document": pairs.documents})
    prompts = resolve_prompts(model, config)  # as the task is scored: each query and document with its prompt
    mined = mine_hard_negatives(
        dataset, model, corpus=corpus, num_negatives=config.hard_negatives,
        query_prompt=prompts.query, corpus_prompt=prompts.document,
        relative_margin=config.negative_margin, sampling_strategy="top", use_faiss=True, output_format="n-tuple",
        batch_size=config.eval_batch_size, cache_folder=str(cache_folder) if cache_folder else None,
        # several GPUs outside torchrun: a process each (under torchrun rank 0 mines while the others hold theirs)
        use_multi_process=(pool_devices(config.device) if world_size() == 1 else None) or False)
    columns = [f"negative_{n}" for n in range(1, config.hard_negatives + 1)]
    found = {(row["query"], row["document"]): [row[column] for column in columns] for row in mined}
    relevant: dict[str, set[str]] = {}
    for query, document in zip(pairs.queries, pairs.documents, strict=True):
        relevant.setdefault(query, set()).add(document)
    draw = random.Random(config.validation_seed)
    negatives, filled = [], 0
    for query, document in zip(pairs.queries, pairs.documents, strict=True):
        hard = found.get((query, document), [])
        if not hard:
            hard, filled = _random_negatives(corpus, relevant[query], config.hard_negatives, draw), filled + 1
        negatives.append(hard)
    if filled:
        logger.warning("hard negatives: %d of %d pairs had fewer than %d candidates outside the margin; they got "
                       "random documents of the corpus instead", filled, len(pairs), config.hard_negatives)
    stats = {"per_pair": config.hard_negatives, "relative_margin": config.negative_margin, "sampling": "top",
             "excluded": "documents judged relevant to the query, and candidates within the margin",
             "mined_with": "the raw model (baseline)", "index": "faiss exact inner product (use_faiss=True)",
             "pairs_mined": len(pairs) - filled, "pairs_given_random_negatives": filled}
    return RetrievalPairs(pairs.queries, pairs.documents, pairs.source, negatives), stats


def _random_negatives(corpus: list[str], relevant: set[str], count: int, draw: random.Random) -> list[str]:
    """`count` distinct documents of `corpus` drawn at random, none of them in `relevant`."""
    chosen: list[str] = []
    for _ in range(100 * count):
        if len(chosen) == count:
            break
        document = corpus[draw.randrange(len(corpus))]
        if document not in relevant and document not in chosen:
            chosen.append(document)
    if len(chosen) < count:
        raise UsageError(f"--hard-negatives {count}: the corpus has too few documents that are not relevant to a "
                         "training query; give fewer")
    return chosen
