"""The objectives `finetune --objective` trains with: a declarative registry (like data/tasks.py's) of what each
trains on, with which loss, how it is validated and scored, in which stages, and where its defaults differ from the
paper's STS recipe; and the training loss of a re-ranker that learned nothing. The losses are built and trained in
train/ (train/losses.py maps each loss named here to its sentence-transformers class)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from sbert_repro.config.checks import one_of

# What a stage trains on. sts-pairs: STSb train, gold / 5 labels. nli-pairs: --nli-task's labelled pairs.
# nli-triplets: the same set as (premise, entailed hypothesis[, contradiction]) for a ranking loss.
# retrieval-judgements: --train-task's (query, relevant document) pairs, with mined negatives where asked.
DataKind = Literal["sts-pairs", "nli-pairs", "nli-triplets", "retrieval-judgements"]
NLI_DATA: tuple[DataKind, ...] = ("nli-pairs", "nli-triplets")  # trained for --nli-epochs, not --epochs
# What picks a stage's best checkpoint: STSb validation's Spearman, or nDCG@10 of held-out train queries.
Validation = Literal["stsb-validation", "held-out-queries"]
# How the fine-tuned model is scored: its embeddings on every task, a cross-encoder's predicted scores on the STS
# pairs, or the raw model's search re-ranked by it.
Scoring = Literal["embeddings", "pair-scores", "reranked-search"]
# Record sections only some objectives write: their training split and mined negatives, and what the fine-tuned
# scores are (a re-ranked search, not the model's own).
Section = Literal["retrieval_training", "finetuned_is"]


@dataclass(frozen=True)
class Objective:
    """One `--objective`. A single-stage objective declares its data, loss and validation; one of several stages
    (nli-then-stsb) names them in `stages`, each an objective of this registry, and leaves its own None."""

    name: str
    label: str  # short, for pages: "CoSENT loss"
    train_data: DataKind | None
    loss: str | None  # the sentence-transformers loss class it trains with
    validation: Validation | None
    stages: tuple[str, ...] = ()  # (): itself, one stage
    defaults: Mapping[str, Any] = field(default_factory=dict)  # where it differs from PAPER_RECIPE
    cross_encoder: bool = False  # a CrossEncoder is trained (both texts in one input), not the bi-encoder
    scoring: Scoring = "embeddings"
    sections: tuple[Section, ...] = ()
    # MatryoshkaLoss may wrap its loss: a loss on the embeddings alone. (SoftmaxLoss's classifier is sized for the
    # full vector.)
    matryoshka: bool = False
    # The stage's record keeps its loss's class and get_config_dict(); where off (the paper's losses, the ranking
    # loss), the objective's name says which loss it was, at the library's settings.
    records_loss: bool = False
    # Batches hold no text twice: the loss takes the batch's other examples as negatives, and a query's own document
    # twice in a batch would be a false one. (nli-mnrl keeps the plain batches its committed runs were trained with.)
    no_duplicate_batches: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", self.stages or (self.name,))
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        single = (self.train_data, self.loss, self.validation)
        if self.stages == (self.name,) and None in single:
            raise ValueError(f"objective {self.name}: a single stage declares its training data, loss and validation")

    @property
    def trains_on(self) -> tuple[DataKind, ...]:
        """Each stage's training data, in order."""
        return tuple(data for stage in self.stages if (data := OBJECTIVE_REGISTRY[stage].train_data) is not None)


# The paper trains SBERT-STSb (Table 2) with sts-cosine, SBERT-NLI (Table 1) with nli-softmax, SBERT-NLI-STSb
# (Table 2) with nli-then-stsb, and its BERT cross-encoder (Table 2) with cross-encoder; the others are beyond it.
# Retrieval: a ranking loss learns from the other documents of its batch, so larger batches help (sentence-transformers'
# retrieval examples use 64 to 256), and documents are longer than STS sentences (SciFact abstracts run past 256
# tokens: all-MiniLM-L6-v2's own limit). A cross-encoder cannot index a corpus: no retrieval task is scored. A
# re-ranker reads a query and a document as one input (256 tokens), learns from 3 mined negatives per relevant
# document (sentence-transformers' reranker examples mine 5 or more; 3 keeps a CPU epoch short) in one epoch, each
# (query, relevant document) pair labelled 1 and each negative 0, and is scored by re-ranking its training task's
# search (TrainConfig: --retrieval-tasks left out is --train-task), not on STS pairs. Options given on the command
# line win over these defaults.
OBJECTIVE_REGISTRY: dict[str, Objective] = {
    objective.name: objective
    for objective in [
        Objective("sts-cosine", "CosineSimilarityLoss (the paper's)", "sts-pairs", "CosineSimilarityLoss",
                  "stsb-validation", matryoshka=True),
        Objective("nli-softmax", "NLI softmax", "nli-pairs", "SoftmaxLoss", "stsb-validation"),
        Objective("nli-mnrl", "NLI ranking loss", "nli-triplets", "MultipleNegativesRankingLoss", "stsb-validation"),
        # its STS stage is --stsb-objective (training_stages)
        Objective("nli-then-stsb", "NLI softmax, then STSb", None, None, None, stages=("nli-softmax", "sts-cosine")),
        Objective("retrieval", "ranking loss on judged pairs", "retrieval-judgements", "MultipleNegativesRankingLoss",
                  "held-out-queries", defaults={"batch_size": 64, "max_seq_length": 256, "epochs": 3},
                  sections=("retrieval_training",), matryoshka=True, no_duplicate_batches=True),
        # CoSENT and AnglE rank the pairs of a batch by gold where the cosine loss regresses each; their `scale` is
        # the library's default (20), recorded.
        Objective("sts-cosent", "CoSENT loss", "sts-pairs", "CoSENTLoss", "stsb-validation", matryoshka=True,
                  records_loss=True),
        Objective("sts-angle", "AnglE loss", "sts-pairs", "AnglELoss", "stsb-validation", matryoshka=True,
                  records_loss=True),
        Objective("cross-encoder", "BinaryCrossEntropyLoss on gold / 5", "sts-pairs", "BinaryCrossEntropyLoss",
                  "stsb-validation", defaults={"retrieval_tasks": ()}, cross_encoder=True, scoring="pair-scores"),
        Objective("cross-encoder-retrieval", "re-ranker", "retrieval-judgements", "BinaryCrossEntropyLoss",
                  "held-out-queries", defaults={"max_seq_length": 256, "epochs": 1, "hard_negatives": 3,
                                                "rerank_top_k": 100, "sts_tasks": ()},
                  cross_encoder=True, scoring="reranked-search", sections=("finetuned_is", "retrieval_training")),
    ]
}


def get_objective(name: str) -> Objective:
    """The registry's objective `name`; an unknown one is a one-line UsageError naming the valid ones."""
    one_of("--objective", name, OBJECTIVE_REGISTRY, "objective")
    return OBJECTIVE_REGISTRY[name]


def training_stages(objective: str, stsb_objective: str = "sts-cosine") -> tuple[str, ...]:
    """The objective's stages in order; in one of several stages (nli-then-stsb), its STS stage is
    --stsb-objective."""
    stages = get_objective(objective).stages
    if len(stages) == 1:
        return stages
    return tuple(stsb_objective if stage in STS_OBJECTIVES else stage for stage in stages)


# Views of the registry, by the names the code and the command line read.
OBJECTIVES = tuple(OBJECTIVE_REGISTRY)
OBJECTIVE_STAGES = {name: objective.stages for name, objective in OBJECTIVE_REGISTRY.items()}
# A bi-encoder on STSb pairs, one stage: what --stsb-objective may name
STS_OBJECTIVES = tuple(name for name, objective in OBJECTIVE_REGISTRY.items()
                       if objective.train_data == "sts-pairs" and not objective.cross_encoder)
CROSS_ENCODER_OBJECTIVES = tuple(name for name, objective in OBJECTIVE_REGISTRY.items() if objective.cross_encoder)
RETRIEVAL_TRAINING_OBJECTIVES = tuple(name for name, objective in OBJECTIVE_REGISTRY.items()
                                      if objective.train_data == "retrieval-judgements")
OBJECTIVE_DEFAULTS: dict[str, dict[str, Any]] = {
    name: dict(objective.defaults) for name, objective in OBJECTIVE_REGISTRY.items() if objective.defaults}


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
