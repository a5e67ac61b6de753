"""The objectives `finetune --objective` trains with: a declarative registry (like data/tasks.py's) of what each
trains on, in which stages, and where its defaults differ from the paper's STS recipe; and the training loss of a
re-ranker that learned nothing. The training itself is train/'s."""

from __future__ import annotations

import math
from typing import Any

# sts-cosine: the STSb fine-tune (paper Table 2, SBERT-STSb). nli-softmax: the paper's NLI objective
# (SBERT-NLI, Table 1). nli-mnrl: the ranking loss sentence-transformers recommends for NLI pairs.
# nli-then-stsb: nli-softmax, then sts-cosine from its weights (SBERT-NLI-STSb, Table 2).
# retrieval: (query, relevant document) pairs of a BEIR task's train judgements, MultipleNegativesRankingLoss
# with in-batch and optionally mined hard negatives (training for search; not in the paper).
# sts-cosent, sts-angle: the same STSb pairs and labels as sts-cosine, CoSENTLoss and AnglELoss (train/losses.py; not
# in the paper). nli-then-stsb's second stage is --stsb-objective (losses.training_stages).
# cross-encoder: the paper's BERT cross-encoder of Table 2 (both sentences in one input, a regression head on
# gold / 5; train/cross_encoder_training.py), on STSb train with the STS recipe; scored on the STS tasks only.
# cross-encoder-retrieval: a re-ranker (not in the paper): a cross-encoder trained on --train-task's judgements,
# each (query, relevant document) pair labelled 1 and its --hard-negatives mined by the raw model labelled 0; scored
# by re-ranking the raw model's exact search of the retrieval tasks (evaluation/reranking.py).
# Each objective's training stages, in order.
OBJECTIVE_STAGES = {"sts-cosine": ("sts-cosine",), "nli-softmax": ("nli-softmax",), "nli-mnrl": ("nli-mnrl",),
                    "nli-then-stsb": ("nli-softmax", "sts-cosine"), "retrieval": ("retrieval",),
                    "sts-cosent": ("sts-cosent",), "sts-angle": ("sts-angle",), "cross-encoder": ("cross-encoder",),
                    "cross-encoder-retrieval": ("cross-encoder-retrieval",)}
STS_OBJECTIVES = ("sts-cosine", "sts-cosent", "sts-angle")  # STSb train pairs, gold / 5 labels
CROSS_ENCODER_OBJECTIVES = ("cross-encoder", "cross-encoder-retrieval")  # a CrossEncoder is trained
RETRIEVAL_TRAINING_OBJECTIVES = ("retrieval", "cross-encoder-retrieval")  # trained on --train-task's judgements
OBJECTIVES = tuple(OBJECTIVE_STAGES)
# Where an objective's own defaults differ from the paper's STS recipe (config/training.py's PAPER_RECIPE). Retrieval:
# a ranking loss learns from the other documents of its batch, so larger batches help (sentence-transformers'
# retrieval examples use 64 to 256), and documents are longer than STS sentences (SciFact abstracts run past
# 256 tokens: all-MiniLM-L6-v2's own limit). A cross-encoder cannot index a corpus: no retrieval task is scored.
# A re-ranker reads a query and a document as one input (256 tokens), learns from 3 mined negatives per relevant
# document (sentence-transformers' reranker examples mine 5 or more; 3 keeps a CPU epoch short) in one
# epoch, and is scored by re-ranking its training task's search (TrainConfig: --retrieval-tasks left out is
# --train-task), not on STS pairs. Options given on the command line win.
OBJECTIVE_DEFAULTS: dict[str, dict[str, Any]] = {
    "retrieval": {"batch_size": 64, "max_seq_length": 256, "epochs": 3},
    "cross-encoder": {"retrieval_tasks": ()},
    "cross-encoder-retrieval": {"max_seq_length": 256, "epochs": 1, "hard_negatives": 3, "rerank_top_k": 100,
                                "sts_tasks": ()}}


def reranker_no_learning_loss(pos_weight: float, negatives: int) -> float:
    """The training loss of a re-ranker (cross-encoder-retrieval) that learned nothing and scores every pair alike:
    BinaryCrossEntropyLoss at logit 0 over one positive weighted `pos_weight` and `negatives` negatives, averaged
    per row, ln 2 (w + n) / (1 + n); with w = n, the best any constant score does. A re-ranker whose loss stays
    there took nothing from its judgements."""
    return math.log(2) * (pos_weight + negatives) / (1 + negatives)


def ended_at_no_learning(losses: list[float], no_learning: float) -> tuple[bool, float]:
    """Whether a re-ranker's logged training loss, over its last third, stayed within 3% of `no_learning`
    (reranker_no_learning_loss), and where it ended; the rule the run warns by and the results page reports by."""
    last = losses[-max(1, len(losses) // 3):]
    ended_at = sum(last) / len(last) if last else 0.0
    return ended_at >= 0.97 * no_learning, ended_at
