"""Batching: which training examples share a batch.

The paper batched at random. Batches of pairs of similar length (LengthGroupedBatchSampler) need less padding, so
less work, and their order is still shuffled. Where the loss takes the other examples of a batch as negatives, no
text may appear twice in a batch (LengthGroupedNoDuplicatesBatchSampler, or the library's NO_DUPLICATES).
Each reaches the sentence-transformers Trainer as its training arguments' `batch_sampler`.
"""

from __future__ import annotations

from typing import Any

import torch
from datasets import Dataset
from sentence_transformers.base.sampler import BatchSamplers, DefaultBatchSampler
from transformers.trainer_pt_utils import get_length_grouped_indices

from sbert_repro.config.objectives import get_objective


class LengthGroupedBatchSampler(DefaultBatchSampler):
    """Batches of examples of similar length, in random order: less padding than random batches, so less work.

    transformers' length grouping (shuffle, then sort within mega-batches of 50 batches) chooses the batches;
    their order is then shuffled too, so long and short batches are spread over the epoch. Length is the
    characters of an example's text columns, a cheap stand-in for its tokens.
    """

    def __init__(self, dataset: Dataset, batch_size: int, drop_last: bool, valid_label_columns: list[str] | None = None,
                 generator: torch.Generator | None = None, seed: int = 0) -> None:
        super().__init__(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
        self.text_columns = [list(dataset[column]) for column in dataset.column_names
                             if isinstance(dataset[0][column], str)]
        self.lengths = [sum(len(column[row]) for column in self.text_columns) for row in range(len(dataset))]

    def __iter__(self) -> Any:
        if self.generator is not None:
            self.generator.manual_seed(self.seed + self.epoch)
        order = get_length_grouped_indices(self.lengths, self.batch_size, generator=self.generator)
        batches = self._batches(order)
        if self.drop_last:
            batches = [batch for batch in batches if len(batch) == self.batch_size]
        for position in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[position]

    def _batches(self, order: list[int]) -> list[list[int]]:
        return [order[start:start + self.batch_size] for start in range(0, len(order), self.batch_size)]


class LengthGroupedNoDuplicatesBatchSampler(LengthGroupedBatchSampler):
    """Length-grouped batches in which no text appears twice (for in-batch negatives): in the length-grouped
    order, an example whose text is already in the batch waits for the next one, as the library's
    NoDuplicatesBatchSampler defers it in its random order."""

    def __init__(self, dataset: Dataset, batch_size: int, drop_last: bool, valid_label_columns: list[str] | None = None,
                 generator: torch.Generator | None = None, seed: int = 0) -> None:
        super().__init__(dataset, batch_size, drop_last, valid_label_columns, generator, seed)
        self.texts = [{column[row] for column in self.text_columns} for row in range(len(dataset))]

    def _batches(self, order: list[int]) -> list[list[int]]:
        batches, waiting = [], list(order)
        while waiting:
            batch, seen, deferred = [], set(), []
            for position, row in enumerate(waiting):
                if len(batch) == self.batch_size:
                    deferred.extend(waiting[position:])
                    break
                if self.texts[row].isdisjoint(seen):
                    batch.append(row)
                    seen |= self.texts[row]
                else:
                    deferred.append(row)
            batches.append(batch)
            waiting = deferred
        return batches


def batch_sampler(objective: str, group_by_length: bool) -> Any:
    """How an objective's examples are batched: by length or at random, without duplicate texts where the
    loss's negatives come from the batch (the registry's no_duplicate_batches)."""
    if get_objective(objective).no_duplicate_batches:
        return LengthGroupedNoDuplicatesBatchSampler if group_by_length else BatchSamplers.NO_DUPLICATES
    return LengthGroupedBatchSampler if group_by_length else BatchSamplers.BATCH_SAMPLER
