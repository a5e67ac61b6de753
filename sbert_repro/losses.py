"""Losses beyond the paper's: the STS objectives' loss classes, MatryoshkaLoss around a chosen loss, and what a
training record says about them.

sts-cosent (CoSENTLoss) and sts-angle (AnglELoss) train on the same STSb pairs and gold / 5 labels as the
paper's sts-cosine (CosineSimilarityLoss). Where the cosine loss regresses each pair's cosine on its label,
these rank pairs: every pair scored lower by gold is pushed below every pair scored higher, in the batch, by a
softmax-like penalty with a temperature `scale` (the library's default, 20, is kept and recorded). AnglE does the
same on the angle difference in complex space, whose gradient does not vanish near cosine +-1.
"""

from __future__ import annotations

from typing import Any

from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import (
    AnglELoss,
    CachedMultipleNegativesRankingLoss,
    CoSENTLoss,
    CosineSimilarityLoss,
    MatryoshkaLoss,
    MultipleNegativesRankingLoss,
)
from torch import nn

from sbert_repro.config import TrainConfig
from sbert_repro.objectives import OBJECTIVE_STAGES, STS_OBJECTIVES

STS_LOSSES: dict[str, type[nn.Module]] = {"sts-cosine": CosineSimilarityLoss, "sts-cosent": CoSENTLoss,
                                          "sts-angle": AnglELoss}
# Stages whose loss MatryoshkaLoss may wrap: a loss on the embeddings alone. (SoftmaxLoss's classifier is sized
# for the full vector, so the NLI softmax stage is never wrapped.)
MATRYOSHKA_STAGES = (*STS_OBJECTIVES, "retrieval")
# Losses whose settings a training record keeps: the ones the paper did not use. (The paper's losses have no
# setting to record, and their records stay as they were.)
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
    weights around it; {} for the paper's losses unwrapped (their records stay as they were)."""
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
