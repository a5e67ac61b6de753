"""Training: the siamese bi-encoder fine-tune with CosineSimilarityLoss, through the sentence-transformers Trainer.

Both sentences of a pair go through the same network; the loss is the squared difference between
cos(u, v) and the gold score scaled to 0..1 (gold / 5), as in the paper. STSb validation is scored at the
end of every epoch and the best epoch's weights are kept.
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

from sbert_repro.config import RunConfig
from sbert_repro.data import STSPairs
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


def training_arguments(config: RunConfig, checkpoint_dir: Path, device: str) -> SentenceTransformerTrainingArguments:
    cuda = device.startswith("cuda")
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return SentenceTransformerTrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
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
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,  # with load_best_model_at_end the best checkpoint is kept as well
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
             checkpoint_dir: Path, device: str) -> dict[str, Any]:
    """Train `model` in place; return the training record (speed, validation history, best epoch)."""
    model.max_seq_length = config.max_seq_length
    loss = CosineSimilarityLoss(model)
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
    )
    result = trainer.train()

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
    }
