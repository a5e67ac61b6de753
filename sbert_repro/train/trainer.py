"""Training the siamese bi-encoder through the sentence-transformers Trainer, one objective's stage at a time
(train_bi_encoder; its training set and loss are train/losses.py's), and what the cross-encoder's Trainer shares
with it: the arguments, the stop on a non-finite loss, resuming, and the training record.

Validation (STSb validation; for retrieval, held-out train queries) is scored at the end of every epoch (and
every --save-steps steps, when set) and the best checkpoint's weights are kept.

Two speed-ups the paper did not use: batches of pairs of similar length (train/batching.py; the
batches still come in random order), and the forward pass in bf16 (or fp16, loss-scaled) autocast where
--precision resolves to it (weights, gradients and optimizer stay fp32).

Checkpoints (weights, optimizer, scheduler, RNG states and the position in the data) let `--resume` continue
an interrupted run exactly where it stopped. A loss that turns NaN or infinite stops the run at once, before
the optimizer applies it, so every checkpoint on disk is a good one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from transformers import TrainerCallback

from sbert_repro.config.objectives import NLI_DATA, get_objective
from sbert_repro.config.training import TrainConfig
from sbert_repro.data.loaders import NLIPairs, RetrievalData, STSPairs
from sbert_repro.data.retrieval_pairs import RetrievalPairs
from sbert_repro.errors import UsageError
from sbert_repro.model.encoder import resolve_prompts
from sbert_repro.runs.environment import is_main_process, world_size
from sbert_repro.runs.folders import WriteFailed, writes_to
from sbert_repro.train.batching import batch_sampler
from sbert_repro.train.checkpoints import last_complete_checkpoint
from sbert_repro.train.losses import loss_record, training_set_and_loss, with_matryoshka
from sbert_repro.train.reporting import follow_conventions
from sbert_repro.train.validation import BI_ENCODER_BEST_METRIC, bi_encoder_validation

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class NonFiniteLossCheck:
    """Stops a Trainer on a NaN or infinite loss before the optimizer applies it (so every checkpoint on disk is a
    good one); mixed into the bi-encoder's Trainer here and the cross-encoder's (train/cross_encoder_training.py)."""

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None):
        result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)  # type: ignore[misc]
        loss = result[0] if return_outputs else result
        if not torch.isfinite(loss).all():
            raise NonFiniteLossError(f"{loss.detach().float().mean().item()}")
        return result


class CheckpointWriteCheck:
    """A checkpoint that cannot be written (a full disk, a folder without write permission) as one WriteFailed line
    naming it, whichever writer failed: torch's (a RuntimeError without an errno), safetensors', or Python's. The
    checkpoints before it are left as they were, for --resume."""

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"  # type: ignore[attr-defined]
        with writes_to(folder):
            super()._save_checkpoint(model, trial)  # type: ignore[misc]


class OneDevice:
    """Mixed into both Trainers: the GPU on_one_device chose is made the current one again once the Trainer is built
    (its default arguments, built for the model card, make GPU 0 current), since accelerate places the model and
    each batch on the current GPU."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.make_current(self.args)  # type: ignore[attr-defined]

    @staticmethod
    def make_current(args: Any) -> None:
        if world_size() == 1 and args.device.type == "cuda":
            torch.cuda.set_device(args.device)


class CheckedTrainer(OneDevice, NonFiniteLossCheck, CheckpointWriteCheck, SentenceTransformerTrainer):
    """The sentence-transformers Trainer, stopping on a non-finite loss or a checkpoint it cannot write."""


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


def training_arguments(config: TrainConfig, checkpoint_dir: Path, epochs: int,
                       objective: str = "sts-cosine", best_metric: str = BI_ENCODER_BEST_METRIC,
                       arguments: type = SentenceTransformerTrainingArguments) -> Any:
    """The Trainer's arguments (`arguments`: the bi-encoder's class, or the cross-encoder's, which takes the same)."""
    # Validation and checkpoints go together, so the best checkpoint is always one that was scored.
    schedule = ({"eval_strategy": "steps", "eval_steps": config.save_steps, "save_strategy": "steps",
                 "save_steps": config.save_steps} if config.save_steps
                else {"eval_strategy": "epoch", "save_strategy": "epoch"})
    with no_data_parallel_warning():
        built = arguments(
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
            fp16=config.precision == "fp16",  # autocast with the Trainer's loss scaling (GPUs without native bf16)
            use_cpu=config.device == "cpu",
            **schedule,
            save_total_limit=config.keep_checkpoints,  # the best checkpoint is kept on top of these
            load_best_model_at_end=True,
            metric_for_best_model=best_metric,
            greater_is_better=True,
            logging_strategy="steps",
            logging_steps=0.05,  # a float below 1: the training loss 20 times per run, whatever its length
            report_to=config.report_to,  # none (the default), tensorboard, wandb, mlflow or all
            disable_tqdm=False,
            dataloader_drop_last=False,
            batch_sampler=batch_sampler(objective, config.group_by_length),
        )
    return on_one_device(built, config.device)


def on_one_device(args: Any, device: str) -> Any:
    """`args` training on `device` alone. Outside torchrun, transformers takes GPU 0 whatever the run names and
    every visible GPU through nn.DataParallel, which splits each batch over them and multiplies the batch by their
    number: the paper's 16 would become 16 x N, and --device cuda:1 would train on GPU 0. Under torchrun each
    process already has its own GPU (config/hardware.py's resolve_device), and on a CPU there is nothing to take."""
    if world_size() > 1 or not device.startswith("cuda"):
        return args
    gpu = torch.device(device)
    if gpu.index is None:  # a bare "cuda": the current GPU, as torch places tensors
        gpu = torch.device("cuda", torch.cuda.current_device())
    args.__dict__["_setup_devices"] = gpu  # the value of its cached property `device`
    args._n_gpu = 1
    OneDevice.make_current(args)
    logger.info("training on %s alone (%d CUDA devices visible; torchrun trains on several)", gpu,
                torch.cuda.device_count())
    return args


class NoDataParallelWarning(logging.Filter):
    """sentence-transformers warns that DataParallel is in use whenever its arguments are built outside torchrun;
    on_one_device keeps it from being used, so for the arguments built here the line would be false."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Currently using DataParallel")


@contextmanager
def no_data_parallel_warning() -> Iterator[None]:
    warnings = logging.getLogger("sentence_transformers.base.training_args")
    quiet = NoDataParallelWarning()
    warnings.addFilter(quiet)
    try:
        yield
    finally:
        warnings.removeFilter(quiet)


def train_bi_encoder(model: SentenceTransformer, objective: str, train: STSPairs | NLIPairs | RetrievalPairs,
                     validation: STSPairs | RetrievalData, config: TrainConfig, checkpoint_dir: Path) -> dict[str, Any]:
    """Train `model` in place on one objective; return the training record (speed, validation history, best).

    Validation is scored after every epoch (and --save-steps), and the best checkpoint is kept: STSb validation
    (Spearman) for the STS and NLI objectives, the held-out train queries (nDCG@10) for retrieval. With --resume,
    training continues from the latest checkpoint in `checkpoint_dir`. Training uses --max-seq-length; the model
    leaves at the length it came with (the one it is scored at).
    """
    scoring_length, model.max_seq_length = model.max_seq_length, config.max_seq_length
    try:
        return _train(model, objective, train, validation, config, checkpoint_dir)
    finally:
        model.max_seq_length = scoring_length  # the model leaves at the length it came with


def _train(model: SentenceTransformer, objective: str, train: STSPairs | NLIPairs | RetrievalPairs,
           validation: STSPairs | RetrievalData, config: TrainConfig, checkpoint_dir: Path) -> dict[str, Any]:
    train_dataset, loss = training_set_and_loss(objective, model, train, config)
    loss = with_matryoshka(model, loss, objective, config.matryoshka_dims)
    epochs = config.nli_epochs if get_objective(objective).train_data in NLI_DATA else config.epochs
    evaluator, best_metric, metric = bi_encoder_validation(objective, validation, config.eval_batch_size,
                                                           resolve_prompts(model, config))
    trainer = CheckedTrainer(
        model=model,
        args=training_arguments(config, checkpoint_dir, epochs, objective, best_metric),
        train_dataset=train_dataset,
        loss=loss,
        evaluator=evaluator,
        callbacks=[EvaluateAndSaveEachEpoch()] if config.save_steps else None,
    )
    follow_conventions(trainer, checkpoint_dir)
    result, last_checkpoint = run_trainer(trainer, checkpoint_dir, config.resume)
    return {**training_record(trainer, result, best_metric, metric, objective, train, epochs, last_checkpoint),
            **loss_record(loss, objective)}  # the settings of the losses not in the paper; none for the paper's


def resume_point(checkpoint_dir: Path) -> str | None:
    """The checkpoint to resume from. Under torchrun the main process alone tidies the folder (deleting what a kill
    cut short, setting aside what cannot be loaded); the others wait for it, then find the same checkpoint."""
    import torch.distributed as distributed

    if is_main_process():
        with writes_to(checkpoint_dir):  # setting aside what cannot be resumed from renames and deletes there
            tidied = last_complete_checkpoint(checkpoint_dir, tidy=True)
    if distributed.is_available() and distributed.is_initialized():
        distributed.barrier()
    return tidied if is_main_process() else last_complete_checkpoint(checkpoint_dir)


def run_trainer(trainer: Any, checkpoint_dir: Path, resume: bool) -> tuple[Any, str | None]:
    """trainer.train(), from the latest complete checkpoint with `resume`; a non-finite loss is one line. Returns
    the train result and the checkpoint resumed from (None: from the start)."""
    last_checkpoint = resume_point(checkpoint_dir) if resume else None
    if last_checkpoint:
        logger.info("resuming from %s", last_checkpoint)
    try:
        return trainer.train(resume_from_checkpoint=last_checkpoint), last_checkpoint
    except WriteFailed as failure:
        kept = last_complete_checkpoint(checkpoint_dir)
        raise WriteFailed(failure.where, f"{failure.reason}; " + (f"{Path(kept).name} and those before it are kept"
                          if kept else "no checkpoint was complete yet"), failure.no_room) from None
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
        # fp32 whatever --precision computes in (autocast) and whatever dtype the checkpoint was saved in
        "weights_dtype": str(next(trainer.model.parameters()).dtype).removeprefix("torch."),
        "trained_on": str(trainer.args.device),  # one device a process: never nn.DataParallel over several
    }
