"""Training: the siamese bi-encoder fine-tune with CosineSimilarityLoss, through the sentence-transformers Trainer.

Both sentences of a pair go through the same network; the loss is the squared difference between
cos(u, v) and the gold score scaled to 0..1 (gold / 5), as in the paper. STSb validation is scored at the
end of every epoch (and every --save-steps steps, when set) and the best checkpoint's weights are kept.

Checkpoints (weights, optimizer, scheduler, RNG states and the position in the data) let `--resume` continue
an interrupted run exactly where it stopped. A loss that turns NaN or infinite stops the run at once, before
the optimizer applies it, so every checkpoint on disk is a good one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator
from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint

from sbert_repro.config import RunConfig
from sbert_repro.data import STSPairs
from sbert_repro.errors import UsageError
from sbert_repro.records import world_size
from sbert_repro.tasks import STS_TASKS, TRAIN_TASK

logger = logging.getLogger(__name__)

VALIDATION_NAME = "stsb-validation"
# The Trainer logs the evaluator's main score under this key; it also picks the best checkpoint.
BEST_METRIC = f"eval_{VALIDATION_NAME}_spearman_cosine"


def pairs_to_dataset(pairs: STSPairs) -> Dataset:
    """(sentence1, sentence2, score) with the score scaled to 0..1, as CosineSimilarityLoss expects."""
    task = STS_TASKS[TRAIN_TASK]
    scale = task.score_max - task.score_min
    return Dataset.from_dict({"sentence1": pairs.sentences1, "sentence2": pairs.sentences2,
                              "score": [(score - task.score_min) / scale for score in pairs.scores]})


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class FiniteCosineSimilarityLoss(CosineSimilarityLoss):
    """CosineSimilarityLoss that stops training on a NaN or infinite loss instead of training on it."""

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        loss = super().forward(*args, **kwargs)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"{loss.item()}")
        return loss


class EvaluateAndSaveEachEpoch(TrainerCallback):
    """With step checkpoints (--save-steps) still score validation and save at the end of every epoch."""

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        control.should_evaluate = True
        control.should_save = True
        return control


def per_process_batch_size(batch_size: int) -> int:
    """--batch-size is the global batch, as in the paper: each of N torchrun processes takes 1/N of it."""
    processes = world_size()
    if batch_size % processes:
        raise UsageError(f"--batch-size {batch_size} does not split evenly over {processes} processes; "
                         "give a multiple of the process count")
    return batch_size // processes


def training_arguments(config: RunConfig, checkpoint_dir: Path, device: str) -> SentenceTransformerTrainingArguments:
    cuda = device.startswith("cuda")
    bf16 = cuda and torch.cuda.is_bf16_supported()
    # Validation and checkpoints go together, so the best checkpoint is always one that was scored.
    schedule = ({"eval_strategy": "steps", "eval_steps": config.save_steps, "save_strategy": "steps",
                 "save_steps": config.save_steps} if config.save_steps
                else {"eval_strategy": "epoch", "save_strategy": "epoch"})
    return SentenceTransformerTrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=per_process_batch_size(config.batch_size),
        per_device_eval_batch_size=config.eval_batch_size,
        learning_rate=config.lr,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a share of all steps (transformers >= 5)
        lr_scheduler_type="linear",  # linear warm-up, then linear decay to 0, as the paper's code
        optim="adamw_torch",
        weight_decay=config.weight_decay,
        seed=config.seed,
        data_seed=config.seed,
        bf16=bf16,  # autocast on CUDA: bf16 where the GPU has it, else fp16; fp32 on CPU
        fp16=cuda and not bf16,
        use_cpu=device == "cpu",
        **schedule,
        save_total_limit=config.keep_checkpoints,  # the best checkpoint is kept on top of these
        load_best_model_at_end=True,
        metric_for_best_model=BEST_METRIC,
        greater_is_better=True,
        logging_strategy="steps",
        logging_steps=50,
        report_to="none",
        disable_tqdm=False,
        dataloader_drop_last=False,
    )


def finetune(model: SentenceTransformer, train: STSPairs, validation: STSPairs, config: RunConfig,
             checkpoint_dir: Path, device: str, resume: bool = False) -> dict[str, Any]:
    """Train `model` in place; return the training record (speed, validation history, best epoch).

    With `resume`, training continues from the latest checkpoint in `checkpoint_dir` when there is one.
    """
    model.max_seq_length = config.max_seq_length
    loss = FiniteCosineSimilarityLoss(model)
    evaluator = EmbeddingSimilarityEvaluator(
        sentences1=validation.sentences1,
        sentences2=validation.sentences2,
        scores=pairs_to_dataset(validation)["score"],
        main_similarity="cosine",
        name=VALIDATION_NAME,
        batch_size=config.eval_batch_size,
        write_csv=False,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=training_arguments(config, checkpoint_dir, device),
        train_dataset=pairs_to_dataset(train),
        loss=loss,
        evaluator=evaluator,
        callbacks=[EvaluateAndSaveEachEpoch()] if config.save_steps else None,
    )
    last_checkpoint = get_last_checkpoint(str(checkpoint_dir)) if resume and checkpoint_dir.is_dir() else None
    if last_checkpoint:
        logger.info("resuming from %s", last_checkpoint)
    try:
        result = trainer.train(resume_from_checkpoint=last_checkpoint)
    except NonFiniteLossError as error:
        kept = get_last_checkpoint(str(checkpoint_dir)) if checkpoint_dir.is_dir() else None
        raise UsageError(f"training loss became {error} at step {trainer.state.global_step + 1}; stopped. "
                         f"{'The last good checkpoint is ' + kept if kept else 'No checkpoint was saved yet'}; "
                         "lower --lr or check the training data") from None

    history = [{"epoch": entry["epoch"], "step": entry["step"], "validation_spearman": 100 * entry[BEST_METRIC]}
               for entry in trainer.state.log_history if BEST_METRIC in entry]
    losses = [{"epoch": entry["epoch"], "step": entry["step"], "loss": entry["loss"]}
              for entry in trainer.state.log_history if "loss" in entry]
    best = max(history, key=lambda entry: entry["validation_spearman"]) if history else None
    return {
        "train_pairs": len(train),
        "steps": trainer.state.global_step,
        "train_seconds": result.metrics["train_runtime"],
        "steps_per_s": result.metrics["train_steps_per_second"],
        "samples_per_s": result.metrics["train_samples_per_second"],
        "final_train_loss": result.metrics.get("train_loss"),
        "loss_history": losses,
        "validation_history": history,
        "best_epoch": best["epoch"] if best else None,
        "best_validation_spearman": best["validation_spearman"] if best else None,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "resumed_from": last_checkpoint,
    }
