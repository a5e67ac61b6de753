"""Training: the siamese bi-encoder fine-tunes, through the sentence-transformers Trainer.

Both sentences of a pair go through the same network. An objective is a training set and a loss:
- sts-cosine (paper 3.1, regression): the squared difference between cos(u, v) and the gold score scaled to
  0..1 (gold / 5), CosineSimilarityLoss on STSb train;
- sts-cosent, sts-angle: the same pairs and labels, CoSENTLoss and AnglELoss (ranking the pairs of a batch by
  gold; losses.py), not in the paper;
- nli-softmax (paper 3.1, classification): softmax(W (u, v, |u-v|)) over entailment / neutral /
  contradiction, SoftmaxLoss on NLI pairs; the classifier's input is ablated by --concat (paper Table 6);
- nli-mnrl: MultipleNegativesRankingLoss on (premise, entailed hypothesis[, contradiction]) with in-batch
  negatives, the loss sentence-transformers recommends today for NLI data;
- retrieval: the same loss on (query, relevant document[, mined hard negatives]) of a BEIR task's train
  judgements (retrieval_training.py).
Validation (STSb validation; for retrieval, held-out train queries) is scored at the end of every epoch (and
every --save-steps steps, when set) and the best checkpoint's weights are kept.

Two speed-ups the paper did not use: batches of pairs of similar length (batching.py; the
batches still come in random order), and the forward pass in bf16 autocast where --precision resolves to
bf16 (weights, gradients and optimizer stay fp32).

Checkpoints (weights, optimizer, scheduler, RNG states and the position in the data) let `--resume` continue
an interrupted run exactly where it stopped. A loss that turns NaN or infinite stops the run at once, before
the optimizer applies it, so every checkpoint on disk is a good one.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, DatasetDict
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator, SentenceEvaluator
from sentence_transformers.sentence_transformer.losses import (
    AnglELoss,
    CoSENTLoss,
    CosineSimilarityLoss,
    MultipleNegativesRankingLoss,
    SoftmaxLoss,
)
from torch import nn
from transformers import TrainerCallback

from sbert_repro.batching import batch_sampler
from sbert_repro.config import TrainConfig
from sbert_repro.data import NLIPairs, RetrievalData, STSPairs
from sbert_repro.errors import UsageError
from sbert_repro.losses import loss_record, with_matryoshka
from sbert_repro.records import world_size
from sbert_repro.retrieval_training import (
    VALIDATION_METRIC,
    RetrievalPairs,
    retrieval_evaluator,
    retrieval_objective,
)
from sbert_repro.tasks import NLI_LABELS, STS_TASKS, TRAIN_TASK

logger = logging.getLogger(__name__)

VALIDATION_NAME = "stsb-validation"
RETRIEVAL_VALIDATION_NAME = "held-out-queries"
# The Trainer logs the evaluator's main score under this key; it also picks the best checkpoint.
BEST_METRIC = f"eval_{VALIDATION_NAME}_spearman_cosine"
TRAINER_STATE = "trainer_state.json"  # transformers.trainer.TRAINER_STATE_NAME: a checkpoint's last file


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


OBJECTIVES = {"sts-cosine": sts_cosine_objective, "nli-softmax": nli_softmax_objective,
              "nli-mnrl": nli_mnrl_objective, "retrieval": retrieval_objective,
              "sts-cosent": sts_cosent_objective, "sts-angle": sts_angle_objective}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class NonFiniteLossCheck:
    """Stops a Trainer on a NaN or infinite loss before the optimizer applies it (so every checkpoint on disk is a
    good one); mixed into the bi-encoder's Trainer here and the cross-encoder's (cross_encoder.py)."""

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None):
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)  # type: ignore[misc]
        loss = result[0] if return_outputs else result
        if not torch.isfinite(loss).all():
            raise NonFiniteLossError(f"{loss.detach().float().mean().item()}")
        return result


class CheckedTrainer(NonFiniteLossCheck, SentenceTransformerTrainer):
    """The sentence-transformers Trainer, stopping on a non-finite loss."""


class EvaluateAndSaveEachEpoch(TrainerCallback):
    """With step checkpoints (--save-steps) still score validation and save at the end of every epoch."""

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        control.should_evaluate = True
        control.should_save = True
        return control


def is_complete_checkpoint(folder: Path) -> bool:
    """A checkpoint the Trainer finished writing: it writes trainer_state.json after the weights, optimizer,
    scheduler and random states, so a run killed while saving leaves a folder without it (or with it cut off)."""
    has_weights = (folder / "model.safetensors").is_file() or (folder / "pytorch_model.bin").is_file()
    try:
        json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return has_weights


def last_complete_checkpoint(checkpoint_dir: Path, tidy: bool = False) -> str | None:
    """The newest complete checkpoint-N in `checkpoint_dir` (None if there is none). With `tidy`, newer
    incomplete ones are deleted, with one warning line: resuming before them, the Trainer saves them again."""
    if not checkpoint_dir.is_dir():
        return None
    found = sorted((int(match.group(1)), path) for path in checkpoint_dir.iterdir()
                   if path.is_dir() and (match := re.fullmatch(r"checkpoint-(\d+)", path.name)))
    incomplete = []
    while found and not is_complete_checkpoint(found[-1][1]):
        incomplete.append(found.pop()[1])
    latest = str(found[-1][1]) if found else None
    if incomplete and tidy:
        logger.warning("%s: incomplete (the run stopped while saving it), deleted; %s",
                       ", ".join(path.name for path in incomplete),
                       f"resuming from {Path(latest).name}" if latest else "no complete checkpoint, starting afresh")
        for path in incomplete:
            shutil.rmtree(path)
    return latest


def per_process_batch_size(batch_size: int) -> int:
    """--batch-size is the global batch, as in the paper: each of N torchrun processes takes 1/N of it."""
    processes = world_size()
    if batch_size % processes:
        raise UsageError(f"--batch-size {batch_size} does not split evenly over {processes} processes; "
                         "give a multiple of the process count")
    return batch_size // processes


def training_arguments(config: TrainConfig, checkpoint_dir: Path, device: str, epochs: int,
                       objective: str = "sts-cosine", best_metric: str = BEST_METRIC,
                       arguments: type = SentenceTransformerTrainingArguments) -> Any:
    """The Trainer's arguments (`arguments`: the bi-encoder's class, or the cross-encoder's, which takes the same)."""
    # Validation and checkpoints go together, so the best checkpoint is always one that was scored.
    schedule = ({"eval_strategy": "steps", "eval_steps": config.save_steps, "save_strategy": "steps",
                 "save_steps": config.save_steps} if config.save_steps
                else {"eval_strategy": "epoch", "save_strategy": "epoch"})
    return arguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=epochs,
        per_device_train_batch_size=per_process_batch_size(config.batch_size),
        per_device_eval_batch_size=config.eval_batch_size,
        learning_rate=config.lr,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a share of all steps (transformers >= 5)
        lr_scheduler_type="linear",  # linear warm-up, then linear decay to 0, as the paper's code
        optim="adamw_torch_fused",  # AdamW in one fused kernel (transformers' default with torch >= 2.8)
        weight_decay=config.weight_decay,
        seed=config.seed,
        data_seed=config.seed,
        bf16=config.precision == "bf16",  # autocast (CPU or GPU); the weights and optimizer stay fp32
        use_cpu=device == "cpu",
        **schedule,
        save_total_limit=config.keep_checkpoints,  # the best checkpoint is kept on top of these
        load_best_model_at_end=True,
        metric_for_best_model=best_metric,
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=0.05,  # a float below 1: the training loss 20 times per run, whatever its length
        report_to="none",
        disable_tqdm=False,
        dataloader_drop_last=False,
        batch_sampler=batch_sampler(objective, config.group_by_length),
    )


def finetune(model: SentenceTransformer, objective: str, train: STSPairs | NLIPairs | RetrievalPairs,
             validation: STSPairs | RetrievalData, config: TrainConfig, checkpoint_dir: Path, device: str,
             resume: bool = False) -> dict[str, Any]:
    """Train `model` in place on one objective; return the training record (speed, validation history, best).

    Validation is scored after every epoch (and --save-steps), and the best checkpoint is kept: STSb validation
    (Spearman) for the STS and NLI objectives, the held-out train queries (nDCG@10) for retrieval. With `resume`,
    training continues from the latest checkpoint in `checkpoint_dir`. Training uses --max-seq-length; the model
    leaves at the length it came with (the one it is scored at).
    """
    scoring_length, model.max_seq_length = model.max_seq_length, config.max_seq_length
    try:
        return _train(model, objective, train, validation, config, checkpoint_dir, device, resume)
    finally:
        model.max_seq_length = scoring_length  # the model leaves at the length it came with


def validation_evaluator(objective: str, validation: STSPairs | RetrievalData, batch_size: int
                         ) -> tuple[SentenceEvaluator, str, str]:
    """The evaluator scored after each epoch, the key the Trainer logs its main score under, and its short name."""
    if objective == "retrieval":
        assert isinstance(validation, RetrievalData)
        evaluator = retrieval_evaluator(validation, batch_size, RETRIEVAL_VALIDATION_NAME)
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
    return evaluator, BEST_METRIC, "spearman"


def _train(model: SentenceTransformer, objective: str, train: STSPairs | NLIPairs | RetrievalPairs,
           validation: STSPairs | RetrievalData, config: TrainConfig, checkpoint_dir: Path, device: str,
           resume: bool) -> dict[str, Any]:
    train_dataset, loss = OBJECTIVES[objective](model, train, config)
    loss = with_matryoshka(model, loss, objective, config.matryoshka_dims)
    epochs = config.nli_epochs if objective.startswith("nli") else config.epochs
    evaluator, best_metric, metric = validation_evaluator(objective, validation, config.eval_batch_size)
    trainer = CheckedTrainer(
        model=model,
        args=training_arguments(config, checkpoint_dir, device, epochs, objective, best_metric),
        train_dataset=train_dataset,
        loss=loss,
        evaluator=evaluator,
        callbacks=[EvaluateAndSaveEachEpoch()] if config.save_steps else None,
    )
    result, last_checkpoint = run_trainer(trainer, checkpoint_dir, resume)
    return {**training_record(trainer, result, best_metric, metric, objective, train, epochs, last_checkpoint),
            **loss_record(loss)}  # the new losses' settings; nothing for the paper's (their records stay as they were)


def run_trainer(trainer: Any, checkpoint_dir: Path, resume: bool) -> tuple[Any, str | None]:
    """trainer.train(), from the latest complete checkpoint with `resume`; a non-finite loss is one line. Returns
    the train result and the checkpoint resumed from (None: from the start)."""
    last_checkpoint = last_complete_checkpoint(checkpoint_dir, tidy=True) if resume else None
    if last_checkpoint:
        logger.info("resuming from %s", last_checkpoint)
    try:
        return trainer.train(resume_from_checkpoint=last_checkpoint), last_checkpoint
    except NonFiniteLossError as error:
        kept = last_complete_checkpoint(checkpoint_dir)
        raise UsageError(f"training loss became {error} at step {trainer.state.global_step + 1}; stopped. "
                         f"{'The last good checkpoint is ' + kept if kept else 'No checkpoint was saved yet'}; "
                         "lower --lr or check the training data") from None


def training_record(trainer: Any, result: Any, best_metric: str, metric: str, objective: str, train: Any,
                    epochs: int, last_checkpoint: str | None) -> dict[str, Any]:
    """What a finished training stage records: speed, the loss and validation by epoch (x100), the best checkpoint."""
    scored = f"validation_{metric}"  # validation_spearman, validation_ndcg@10
    history = [{"epoch": entry["epoch"], "step": entry["step"], scored: 100 * entry[best_metric]}
               for entry in trainer.state.log_history if best_metric in entry]
    losses = [{"epoch": entry["epoch"], "step": entry["step"], "loss": entry["loss"]}
              for entry in trainer.state.log_history if "loss" in entry]
    best = max(history, key=lambda entry: entry[scored]) if history else None
    return {
        "objective": objective,
        "train_data": train.source,
        "train_pairs": len(train),
        "epochs": epochs,
        "steps": trainer.state.global_step,
        "train_seconds": result.metrics["train_runtime"],
        "steps_per_s": result.metrics["train_steps_per_second"],
        "samples_per_s": result.metrics["train_samples_per_second"],
        "final_train_loss": result.metrics.get("train_loss"),
        "loss_history": losses,
        "validation_history": history,
        "best_epoch": best["epoch"] if best else None,
        f"best_{scored}": best[scored] if best else None,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "resumed_from": last_checkpoint,
    }
