"""What is scored after every epoch to keep the best checkpoint: STSb validation (Spearman) for the STS and NLI
objectives and the cross-encoder, the held-out train queries (nDCG@10) for retrieval and the re-ranker. Each is a
sentence-transformers evaluator; the key the Trainer logs its main score under picks the best checkpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sentence_transformers.cross_encoder.evaluation import (
    CrossEncoderCorrelationEvaluator,
    CrossEncoderRerankingEvaluator,
)
from sentence_transformers.sentence_transformer.evaluation import (
    EmbeddingSimilarityEvaluator,
    InformationRetrievalEvaluator,
    SentenceEvaluator,
)

from sbert_repro.config.objectives import get_objective
from sbert_repro.data.corpus import document_text
from sbert_repro.data.loaders import RetrievalData, STSPairs
from sbert_repro.model.encoder import Prompts
from sbert_repro.train.losses import pairs_to_dataset

VALIDATION_METRIC = "ndcg@10"  # the held-out queries' score that picks the best checkpoint


def retrieval_evaluator(validation: RetrievalData, batch_size: int, name: str, prompts: Prompts | None = None
                        ) -> InformationRetrievalEvaluator:
    """nDCG@10 (and the library's other metrics) of the held-out queries, by cosine, each query and document with
    its prompt as the task is scored (None: the model's own)."""
    prompts = prompts or Prompts()
    return InformationRetrievalEvaluator(
        query_prompt=prompts.query, corpus_prompt=prompts.document,
        queries=validation.queries,
        corpus={doc_id: document_text(doc["title"], doc["text"]) for doc_id, doc in validation.corpus.items()},
        relevant_docs={qid: {doc_id for doc_id, grade in judged.items() if grade > 0}
                       for qid, judged in validation.qrels.items()},
        name=name, batch_size=batch_size, write_csv=False, main_score_function="cosine")


VALIDATION_NAME = "stsb-validation"


RETRIEVAL_VALIDATION_NAME = "held-out-queries"


# The Trainer logs the evaluator's main score under this key; it also picks the best checkpoint.
BI_ENCODER_BEST_METRIC = f"eval_{VALIDATION_NAME}_spearman_cosine"


def bi_encoder_validation(objective: str, validation: STSPairs | RetrievalData, batch_size: int,
                          prompts: Prompts | None = None) -> tuple[SentenceEvaluator, str, str]:
    """The evaluator scored after each epoch, the key the Trainer logs its main score under, and its short name."""
    if get_objective(objective).validation == "held-out-queries":
        assert isinstance(validation, RetrievalData)
        evaluator = retrieval_evaluator(validation, batch_size, RETRIEVAL_VALIDATION_NAME, prompts)
        return evaluator, f"eval_{RETRIEVAL_VALIDATION_NAME}_cosine_{VALIDATION_METRIC}", VALIDATION_METRIC
    assert isinstance(validation, STSPairs)
    evaluator = EmbeddingSimilarityEvaluator(
        sentences1=validation.sentences1,
        sentences2=validation.sentences2,
        scores=pairs_to_dataset(validation)["score"],
        main_similarity="cosine",
        name=VALIDATION_NAME,
        batch_size=batch_size,
        write_csv=False,
    )
    return evaluator, BI_ENCODER_BEST_METRIC, "spearman"


# The Trainer logs the evaluator's Spearman under this key; it also picks the best checkpoint.
CROSS_ENCODER_BEST_METRIC = f"eval_{VALIDATION_NAME}_spearman"


# A re-ranker's: nDCG@10 of the held-out queries' search results, re-ranked.
RERANKER_BEST_METRIC = f"eval_{RETRIEVAL_VALIDATION_NAME}_ndcg@10"


VALIDATION_DEPTH = 30  # the held-out queries' search results re-ranked after each epoch


def cross_encoder_validation(validation: STSPairs, batch_size: int) -> CrossEncoderCorrelationEvaluator:
    """STSb validation: Spearman of the predicted scores against gold / 5 (the same order as against gold)."""
    return CrossEncoderCorrelationEvaluator(
        sentence_pairs=[[first, second] for first, second in zip(validation.sentences1, validation.sentences2,
                                                                 strict=True)],
        scores=pairs_to_dataset(validation)["score"], name=VALIDATION_NAME, batch_size=batch_size, write_csv=False)


def reranking_evaluator(validation: RetrievalData, candidates: Mapping[str, Sequence[str]], batch_size: int
                        ) -> CrossEncoderRerankingEvaluator:
    """nDCG@10 of each held-out query's search results (`candidates`, the raw model's, in its order) re-ranked. A
    relevant document the search missed stays missed (always_rerank_positives=False): the score a re-ranker adds to
    a real search, not to one handed the answers."""
    def text(doc_id: str) -> str:
        return document_text(validation.corpus[doc_id]["title"], validation.corpus[doc_id]["text"])

    samples = [{"query": validation.queries[qid],
                "positive": [text(doc_id) for doc_id, grade in validation.qrels[qid].items()
                             if grade > 0 and doc_id in validation.corpus],
                "documents": [text(doc_id) for doc_id in ranked]} for qid, ranked in candidates.items()]
    return CrossEncoderRerankingEvaluator(samples, at_k=10, always_rerank_positives=False,
                                          name=RETRIEVAL_VALIDATION_NAME, batch_size=batch_size, write_csv=False)
