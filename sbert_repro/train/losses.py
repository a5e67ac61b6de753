"""Each registry objective's loss, built through its sentence-transformers class (LOSSES, by the class name
config/objectives.py declares), and its training rows, by the kind of data it trains on (ROWS); MatryoshkaLoss
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
  judgements (data/retrieval_pairs.py);
- cross-encoder, cross-encoder-retrieval: BinaryCrossEntropyLoss on one score per pair (train/cross_encoder_training.py
  builds their rows).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import torch
from datasets import Dataset, DatasetDict
from sentence_transformers import SentenceTransformer
from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
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

from sbert_repro.config.objectives import get_objective
from sbert_repro.config.objectives import training_stages as objective_stages
from sbert_repro.config.training import TrainConfig
from sbert_repro.data.loaders import NLIPairs, STSPairs
from sbert_repro.data.retrieval_pairs import RetrievalPairs
from sbert_repro.data.tasks import NLI_LABELS, STS_TASKS, TRAIN_TASK
from sbert_repro.errors import UsageError
from sbert_repro.runs.environment import world_size

LossBuilder = Callable[[Any, TrainConfig], nn.Module]


def training_stages(config: TrainConfig) -> tuple[str, ...]:
    """The objective's stages in order, nli-then-stsb's second one being --stsb-objective."""
    return objective_stages(config.objective, config.stsb_objective)


def library_default(loss_class: type[nn.Module]) -> LossBuilder:
    """A loss built with the library's own settings (CoSENT's and AnglE's `scale`, 20, is then recorded)."""
    return lambda model, config: loss_class(model)


def softmax_loss(model: SentenceTransformer, config: TrainConfig) -> nn.Module:
    """The paper's classifier over 3 NLI labels, its input as --concat gives it (paper Table 6)."""
    parts = config.concat.split(",")
    return SoftmaxLoss(model, embedding_dimension=model.get_sentence_embedding_dimension(),
                       num_labels=len(NLI_LABELS),
                       concatenation_sent_rep="u" in parts,  # (u, v)
                       concatenation_sent_difference="|u-v|" in parts,
                       concatenation_sent_multiplication="u*v" in parts)


def ranking_loss(model: SentenceTransformer, config: TrainConfig) -> nn.Module:
    """In-batch negatives; with --mini-batch-size its cached form (GradCache: the same gradients, memory for a
    mini-batch only). Under torchrun each process holds 1/N of the batch: its anchors are scored against every
    process's candidates (gathered), so each sees the whole batch's negatives, as in one process."""
    gather = world_size() > 1
    return (MultipleNegativesRankingLoss(model, gather_across_devices=gather) if config.mini_batch_size is None
            else CachedMultipleNegativesRankingLoss(model, mini_batch_size=config.mini_batch_size,
                                                    gather_across_devices=gather))


def binary_cross_entropy(model: Any, config: TrainConfig) -> nn.Module:
    """One score per pair; a re-ranker's positive weighs as much as its negatives together (sentence-transformers'
    reranker recipe: pos_weight = negatives per positive)."""
    return BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(config.hard_negatives))
                                  if config.hard_negatives else None)


# Each loss the registry may name, by its sentence-transformers class name.
LOSSES: dict[str, LossBuilder] = {
    **{loss.__name__: library_default(loss) for loss in (CosineSimilarityLoss, CoSENTLoss, AnglELoss)},
    "SoftmaxLoss": softmax_loss, "MultipleNegativesRankingLoss": ranking_loss,
    "BinaryCrossEntropyLoss": binary_cross_entropy}


def build_loss(stage: str, model: Any, config: TrainConfig) -> nn.Module:
    """The loss the registry names for `stage`, on `model` (a SentenceTransformer, or a CrossEncoder)."""
    return LOSSES[str(get_objective(stage).loss)](model, config)


def pairs_to_dataset(pairs: STSPairs) -> Dataset:
    """(sentence1, sentence2, score) with the score scaled to 0..1, as CosineSimilarityLoss expects."""
    task = STS_TASKS[TRAIN_TASK]
    scale = task.score_max - task.score_min
    return Dataset.from_dict({"sentence1": pairs.sentences1, "sentence2": pairs.sentences2,
                              "score": [(score - task.score_min) / scale for score in pairs.scores]})


def nli_pairs_dataset(nli: NLIPairs) -> Dataset:
    return Dataset.from_dict({"premise": nli.premises, "hypothesis": nli.hypotheses, "label": nli.labels})


def nli_triplets_dataset(nli: NLIPairs) -> DatasetDict:
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
    return DatasetDict(datasets)


def retrieval_dataset(pairs: RetrievalPairs) -> Dataset:
    """(query, document[, negative_1 ... negative_N]) rows."""
    columns = {"query": pairs.queries, "document": pairs.documents}
    if pairs.negatives:
        for n in range(len(pairs.negatives[0])):
            columns[f"negative_{n + 1}"] = [negatives[n] for negatives in pairs.negatives]
    return Dataset.from_dict(columns)


# A bi-encoder stage's training rows, by the kind of data the registry says it trains on.
ROWS: dict[str, Callable[[Any], Dataset | DatasetDict]] = {
    "sts-pairs": pairs_to_dataset, "nli-pairs": nli_pairs_dataset, "nli-triplets": nli_triplets_dataset,
    "retrieval-judgements": retrieval_dataset}


def training_set_and_loss(stage: str, model: SentenceTransformer, train: STSPairs | NLIPairs | RetrievalPairs,
                          config: TrainConfig) -> tuple[Dataset | DatasetDict, nn.Module]:
    """A bi-encoder stage's training rows and loss, as the registry declares them."""
    return ROWS[str(get_objective(stage).train_data)](train), build_loss(stage, model, config)


def with_matryoshka(model: SentenceTransformer, loss: nn.Module, stage: str, dims: tuple[int, ...]) -> nn.Module:
    """`loss` wrapped in MatryoshkaLoss at `dims` (every dimension weighted 1, the library's default) where dims
    are given and the stage's loss works on the embeddings alone; else `loss` itself."""
    if not dims or not get_objective(stage).matryoshka:
        return loss
    return MatryoshkaLoss(model, loss, list(dims))


def loss_entry(loss: nn.Module) -> dict[str, Any]:
    """The loss's class and its settings as the library states them (get_config_dict); around MatryoshkaLoss, the
    loss it wraps, with the dimensions and weights. As JSON holds it (a setting JSON cannot hold, as its text)."""
    inner = loss.loss if isinstance(loss, MatryoshkaLoss) else loss
    entry: dict[str, Any] = {"class": type(inner).__name__, **inner.get_config_dict()}
    if inner is not loss:
        entry.update({key: value for key, value in loss.get_config_dict().items() if key != "loss"})
        entry["matryoshka_dims"] = list(loss.matryoshka_dims)
        entry["matryoshka_weights"] = [float(weight) for weight in loss.matryoshka_weights]
    return json.loads(json.dumps(entry, default=str))


def loss_record(loss: nn.Module, stage: str | None = None) -> dict[str, Any]:
    """{"loss": loss_entry} for the training record where the registry says `stage` records its loss, or the loss
    is wrapped in MatryoshkaLoss; else {} (the objective names the loss, at the library's settings)."""
    if not isinstance(loss, MatryoshkaLoss) and not (stage and get_objective(stage).records_loss):
        return {}
    return {"loss": loss_entry(loss)}
