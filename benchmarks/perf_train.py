"""benchmarks/perf.py's training side: the sentence-transformers example recipe against this project's trainer, each
variant in a fresh process, timed step by step (steady state) and whole (the epochs' wall time), with its peak
memory and, after whole epochs, the STSb validation Spearman that the same evaluator gives every variant."""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import transformers
from perf_device import (
    ALL,
    RECIPE_DTYPES,
    TRAIN_VARIANTS,
    child_device,
    child_environment,
    environment_set,
    is_cuda,
    peak_gpu_memory,
    peak_resident_mib,
    reset_peak_memory,
    synchronize,
    train_order,
    use_tf32,
    variant_dtype,
)
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
from transformers import TrainerCallback

from sbert_repro.config.training import TrainConfig
from sbert_repro.data.loaders import load_sts
from sbert_repro.model.encoder import build_model
from sbert_repro.train.losses import pairs_to_dataset
from sbert_repro.train.trainer import CheckedTrainer, training_arguments
from sbert_repro.train.validation import bi_encoder_validation

SKIPPED_STEPS = 5  # training steps not timed: allocation and first-call warm-up


@dataclass(frozen=True)
class TrainRun:
    """What every training variant of one model shares (it travels to each variant's process)."""

    model_path: str
    data_dir: Path
    device: str  # as the benchmark names it; a training process sees that GPU alone (child_device)
    epochs: int
    steps: int  # at most this many optimizer steps; ALL: the whole epochs
    tf32: bool = False
    compile: bool = False  # torch.compile for ours (the recipe runs as its example does)


class StepClock(TrainerCallback):
    """When each optimizer step ended; steady-state speed is the mean gap after the warm-up steps. On a GPU each
    reading waits for the step's kernels, which the CPU has only queued when the Trainer calls back."""

    def __init__(self, device: str) -> None:
        self.device, self.ends = device, []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        synchronize(self.device)
        self.ends.append(time.perf_counter())


def recipe_trainer(run: TrainRun, variant: str, train: Any, config: TrainConfig, output: str,
                   clock: StepClock) -> SentenceTransformerTrainer:
    """sentence-transformers' training_stsbenchmark.py, cut to the essentials (no checkpoints, no evaluation while
    timing), in the number format `variant` names."""
    device, dtype = child_device(run.device), RECIPE_DTYPES[variant]
    model = SentenceTransformer(run.model_path, device=device)
    model.max_seq_length = config.max_seq_length
    args = SentenceTransformerTrainingArguments(
        output_dir=output, num_train_epochs=run.epochs, per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr, warmup_steps=config.warmup_ratio, use_cpu=not is_cuda(device), seed=config.seed,
        fp16=dtype == "fp16", bf16=dtype == "bf16", eval_strategy="no", save_strategy="no", report_to="none",
        disable_tqdm=True)
    return SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=CosineSimilarityLoss(model),
                                      callbacks=[clock])


def ours_trainer(run: TrainRun, variant: str, train: Any, config: TrainConfig, output: str,
                 clock: StepClock) -> CheckedTrainer:
    """This project's trainer (train/trainer.py's arguments), without validation or checkpoints while timing."""
    precision, grouped = TRAIN_VARIANTS[variant]
    device = child_device(run.device)
    ours = replace(config, precision=precision, group_by_length=grouped, device=device)
    model = build_model(run.model_path, "mean", device)
    model.max_seq_length = ours.max_seq_length
    args = training_arguments(ours, Path(output), epochs=run.epochs)
    args.eval_strategy, args.save_strategy, args.load_best_model_at_end = "no", "no", False
    args.disable_tqdm, args.torch_compile = True, run.compile
    return CheckedTrainer(model=model, args=args, train_dataset=train, loss=CosineSimilarityLoss(model),
                          callbacks=[clock])


def train_one(run: TrainRun, variant: str, repeat: int) -> dict[str, Any]:
    """One training variant in this (fresh) process: steady-state steps/s and samples/s, the whole training's
    seconds, peak memory, and after whole epochs the STSb validation Spearman (x100)."""
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    use_tf32(run.tf32)
    config = TrainConfig()
    transformers.set_seed(config.seed)
    train = pairs_to_dataset(load_sts("stsb", "train", run.data_dir))
    device, clock, output = child_device(run.device), StepClock(child_device(run.device)), tempfile.mkdtemp(
        prefix="perf-train-")
    build = recipe_trainer if variant in RECIPE_DTYPES else ours_trainer
    trainer = build(run, variant, train, config, output, clock)
    if run.steps != ALL:
        trainer.args.max_steps = run.steps
    reset_peak_memory(device)
    synchronize(device)
    start = time.perf_counter()
    trainer.train()
    synchronize(device)
    seconds = time.perf_counter() - start
    memory = peak_gpu_memory(device)
    shutil.rmtree(output, ignore_errors=True)
    steps_per_s = 1 / float(np.diff(clock.ends[SKIPPED_STEPS:]).mean())
    point = {"variant": variant, "repeat": repeat, "dtype": variant_dtype(variant),
             "compiled": run.compile and variant not in RECIPE_DTYPES,
             "timed_steps": len(clock.ends[SKIPPED_STEPS:]) - 1, "steps": trainer.state.global_step,
             "epochs": float(trainer.state.epoch or 0.0), "batch_size": config.batch_size,
             "max_seq_length": config.max_seq_length, "steps_per_s": steps_per_s,
             "samples_per_s": steps_per_s * config.batch_size, "train_seconds": seconds,
             "peak_rss_mib": peak_resident_mib(), **memory}
    if run.steps == ALL:  # after a capped run the score says little, and costs an encode of STSb validation
        point["stsb_validation_spearman"] = validation_spearman(trainer.model, run.data_dir, config)
    return point


def validation_spearman(model: SentenceTransformer, data_dir: Path, config: TrainConfig) -> float:
    """STSb validation Spearman (x100) by cosine: the EmbeddingSimilarityEvaluator that picks ours' best checkpoint,
    built the same way for every variant."""
    evaluator, _, _ = bi_encoder_validation("sts-cosine", load_sts("stsb", "validation", data_dir),
                                            config.eval_batch_size)
    return 100 * float(evaluator(model)[evaluator.primary_metric])


def train_side_by_side(run: TrainRun, variants: tuple[str, ...]) -> list[dict[str, Any]]:
    """Each training variant in a process of its own (so each peak memory is its own), in train_order."""
    points = []
    for variant, repeat in train_order(run.device, variants):
        with environment_set(child_environment(run.device, os.environ)), \
                ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            point = pool.submit(train_one, run, variant, repeat).result()
        logging.info("train / %s (run %d): %.2f steps/s, %.1f s, %.0f MiB", variant, repeat + 1,
                     point["steps_per_s"], point["train_seconds"], point["peak_rss_mib"])
        points.append(point)
    return points
