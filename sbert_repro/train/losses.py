"""Each bi-encoder objective's training set and loss (OBJECTIVE_LOSSES), an objective's stages, MatryoshkaLoss
around a loss, and what a training record says about the loss. Both sentences of a pair go through the same network:
- sts-cosine (paper 3.1, regression): the squared difference between cos(u, v) and the gold score scaled to
  0..1 (gold / 5), CosineSimilarityLoss on STSb train;
- sts-cosent, sts-angle (not in the paper): the same pairs and labels, CoSENTLoss and AnglELoss. Where the cosine
  loss regresses each pair's cosine on its label, these rank pairs: every pair scored lower by gold is pushed below
  every pair scored higher, in the batch, by a softmax-like penalty with a temperature `scale` (the library's
  default, 20, is kept and recorded). AnglE does the same on the angle difference in complex space, whose gradient
  does not vanish near cosine +-1;
- nli-softmax (paper 3.1, classification): softmax(W (u, v, |u-v|)) over entailment / neutral /
  contradiction, SoftmaxLoss on NLI pairs; the classifier's input is ablated by --concat (paper Table 6);
- nli-mnrl: MultipleNegativesRankingLoss on (premise, entailed hypothesis[, contradiction]) with in-batch
  negatives, the loss sentence-transformers recommends for NLI data;
- retrieval: the same loss on (query, relevant document[, mined hard negatives]) of a BEIR task's train
  judgements (data/retrieval_pairs.py).
"""

from __future__ import annotations

from typing import Any

from datasets import Dataset, DatasetDict
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import (
    AnglELoss,
    CachedMultipleNegativesRankingLoss,
    CoSENTLoss,
    CosineSimilarityLoss,
    MatryoshkaLoss,
    MultipleNegativesRankingLoss,
    SoftmaxLoss,
)
from torch import nn

from sbert_repro.config.objectives import OBJECTIVE_STAGES, STS_OBJECTIVES
from sbert_repro.config.training import TrainConfig
from sbert_repro.data.loaders import NLIPairs, STSPairs
from sbert_repro.data.retrieval_pairs import RetrievalPairs
from sbert_repro.data.tasks import NLI_LABELS, STS_TASKS, TRAIN_TASK
from sbert_repro.errors import UsageError

STS_LOSSES: dict[str, type[nn.Module]] = {"sts-cosine": CosineSimilarityLoss, "sts-cosent": CoSENTLoss,
                                          "sts-angle": AnglELoss}
# Stages whose loss MatryoshkaLoss may wrap: a loss on the embeddings alone. (SoftmaxLoss's classifier is sized
# for the full vector, so the NLI softmax stage is never wrapped.)
MATRYOSHKA_STAGES = (*STS_OBJECTIVES, "retrieval")
# Losses whose settings a training record keeps: the ones the paper did not use. (The paper's losses have no
# setting to record, so their records have no "loss" entry.)
RECORDED_LOSSES = (CoSENTLoss, AnglELoss, MatryoshkaLoss)


def training_stages(config: TrainConfig) -> tuple[str, ...]:
    """The objective's stages in order, nli-then-stsb's second one being --stsb-objective."""
    stages = OBJECTIVE_STAGES[config.objective]
    if config.objective != "nli-then-stsb":
        return stages
    return tuple(config.stsb_objective if stage in STS_OBJECTIVES else stage for stage in stages)


def with_matryoshka(model: SentenceTransformer, loss: nn.Module, stage: str, dims: tuple[int, ...]) -> nn.Module:
    """`loss` wrapped in MatryoshkaLoss at `dims` (every dimension weighted 1, the library's default) where dims
    are given and the stage's loss works on the embeddings alone; else `loss` itself."""
    if not dims or stage not in MATRYOSHKA_STAGES:
        return loss
    return MatryoshkaLoss(model, loss, list(dims))


def loss_record(loss: nn.Module) -> dict[str, Any]:
    """{"loss": {...}} for the training record: the loss class, its scale, and the Matryoshka dimensions and
    weights around it; {} for the paper's losses unwrapped (they have no setting to record)."""
    if not isinstance(loss, RECORDED_LOSSES):
        return {}
    inner = loss.loss if isinstance(loss, MatryoshkaLoss) else loss
    entry: dict[str, Any] = {"class": type(inner).__name__}
    if isinstance(inner, (CoSENTLoss, AnglELoss, MultipleNegativesRankingLoss, CachedMultipleNegativesRankingLoss)):
        entry["scale"] = float(inner.scale)
    if isinstance(loss, MatryoshkaLoss):
        entry["matryoshka_dims"] = list(loss.matryoshka_dims)
        entry["matryoshka_weights"] = [float(weight) for weight in loss.matryoshka_weights]
    return {"loss": entry}


def retrieval_objective(model: SentenceTransformer, pairs: RetrievalPairs, config: TrainConfig
                        ) -> tuple[Dataset, nn.Module]:
    """(query, document[, negative_1 ... negative_N]) rows and the ranking loss; with --mini-batch-size its cached
    form (GradCache: the same gradients, memory for a mini-batch only)."""
    loss = (MultipleNegativesRankingLoss(model) if config.mini_batch_size is None
            else CachedMultipleNegativesRankingLoss(model, mini_batch_size=config.mini_batch_size))
    columns = {"query": pairs.queries, "document": pairs.documents}
    if pairs.negatives:
        for n in range(len(pairs.negatives[0])):
            columns[f"negative_{n + 1}"] = [negatives[n] for negatives in pairs.negatives]
    return Dataset.from_dict(columns), loss


def pairs_to_dataset(pairs: STSPairs) -> Dataset:
    """(sentence1, sentence2, score) with the score scaled to 0..1, as CosineSimilarityLoss expects."""
    task = STS_TASKS[TRAIN_TASK]
    scale = task.score_max - task.score_min
    return Dataset.from_dict({"sentence1": pairs.sentences1, "sentence2": pairs.sentences2,
                              "score": [(score - task.score_min) / scale for score in pairs.scores]})


def sts_cosine_objective(model: SentenceTransformer, pairs: STSPairs, config: TrainConfig) -> tuple[Dataset, nn.Module]:
    return pairs_to_dataset(pairs), CosineSimilarityLoss(model)


def sts_cosent_objective(model: SentenceTransformer, pairs: STSPairs, config: TrainConfig) -> tuple[Dataset, nn.Module]:
    return pairs_to_dataset(pairs), CoSENTLoss(model)  # scale: the library's default (20), recorded


def sts_angle_objective(model: SentenceTransformer, pairs: STSPairs, config: TrainConfig) -> tuple[Dataset, nn.Module]:
    return pairs_to_dataset(pairs), AnglELoss(model)  # scale: the library's default (20), recorded


def nli_softmax_objective(model: SentenceTransformer, nli: NLIPairs, config: TrainConfig
                          ) -> tuple[Dataset, nn.Module]:
    parts = config.concat.split(",")
    loss = SoftmaxLoss(model, embedding_dimension=model.get_sentence_embedding_dimension(),
                       num_labels=len(NLI_LABELS),
                       concatenation_sent_rep="u" in parts,  # (u, v)
                       concatenation_sent_difference="|u-v|" in parts,
                       concatenation_sent_multiplication="u*v" in parts)
    dataset = Dataset.from_dict({"premise": nli.premises, "hypothesis": nli.hypotheses, "label": nli.labels})
    return dataset, loss


def nli_mnrl_objective(model: SentenceTransformer, nli: NLIPairs, config: TrainConfig) -> tuple[Dataset, nn.Module]:
    """(premise, entailed hypothesis, a contradiction of the same premise) triplets; a premise with no
    contradiction gives plain pairs, whose negatives are the other pairs of the batch."""
    entailed, contradicted = NLI_LABELS.index("entailment"), NLI_LABELS.index("contradiction")
    contradictions: dict[str, str] = {}
    for premise, hypothesis, label in zip(nli.premises, nli.hypotheses, nli.labels, strict=True):
        if label == contradicted:
            contradictions.setdefault(premise, hypothesis)
    triplets: dict[str, list[str]] = {"anchor": [], "positive": [], "negative": []}
    pairs: dict[str, list[str]] = {"anchor": [], "positive": []}
    for premise, hypothesis, label in zip(nli.premises, nli.hypotheses, nli.labels, strict=True):
        if label != entailed:
            continue
        target = triplets if premise in contradictions else pairs
        target["anchor"].append(premise)
        target["positive"].append(hypothesis)
        if target is triplets:
            target["negative"].append(contradictions[premise])
    datasets = {name: Dataset.from_dict(columns) for name, columns in (("triplets", triplets), ("pairs", pairs))
                if columns["anchor"]}
    if not datasets:
        raise UsageError(f"{nli.source}: no entailment pairs to train the ranking loss on")
    return DatasetDict(datasets), MultipleNegativesRankingLoss(model)


OBJECTIVE_LOSSES = {"sts-cosine": sts_cosine_objective, "nli-softmax": nli_softmax_objective,
                    "nli-mnrl": nli_mnrl_objective, "retrieval": retrieval_objective,
                    "sts-cosent": sts_cosent_objective, "sts-angle": sts_angle_objective}
