"""What the Trainer reports while it trains: one readable line per evaluation under its progress bar (instead of
every raw log dict, {'loss': '0.01018', ...}, written between the bars), and --report-to's integrations
(TensorBoard, W&B, MLflow), whose TensorBoard event files go to the run folder's tensorboard/<stage>/, which outlives
the checkpoints."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

from transformers.trainer_callback import PrinterCallback, ProgressCallback

from sbert_repro.errors import UsageError

logger = logging.getLogger(__name__)

# The package each integration needs (transformers' own check would fail mid-run, after the baseline).
INTEGRATION_PACKAGES = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",)}


def check_report_to(report_to: str) -> None:
    """--report-to's integration installed (for "all", transformers reports to whichever are): one line if not."""
    for package in INTEGRATION_PACKAGES.get(report_to, ()):
        if importlib.util.find_spec(package) is not None:
            return
    if report_to in INTEGRATION_PACKAGES:
        raise UsageError(f"--report-to {report_to}: the {INTEGRATION_PACKAGES[report_to][0]} package is not "
                         f"installed; pip install {INTEGRATION_PACKAGES[report_to][0]}, or leave --report-to out")


def evaluation_line(state: Any, loss: float | None, metric: str, value: float) -> str:
    """'step 12/36 (epoch 1.00): training loss 0.0102, validation stsb-validation_spearman_cosine 81.23'."""
    trained = f"training loss {loss:.4f}, " if loss is not None else ""
    return (f"step {state.global_step}/{state.max_steps} (epoch {state.epoch or 0:.2f}): {trained}validation "
            f"{metric.removeprefix('eval_')} {100 * value:.2f}")


class OneLinePerEvaluation(ProgressCallback):
    """transformers' progress bars, with one line per evaluation (the step, the latest training loss and the score
    that picks the best checkpoint) in place of the raw log dicts; every log stays in the Trainer's log history."""

    def __init__(self) -> None:
        super().__init__()
        self.loss: float | None = None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        if isinstance(logs.get("loss"), (int, float)):
            self.loss = float(logs["loss"])
        metric = args.metric_for_best_model
        if not state.is_world_process_zero or not isinstance(logs.get(metric), (int, float)):
            return
        line = evaluation_line(state, self.loss, metric, float(logs[metric]))
        if self.training_bar is not None:
            self.training_bar.write(line, file=sys.stderr)  # where the bar is, which redraws below it
        else:
            logger.info(line)


def follow_conventions(trainer: Any, checkpoint_dir: Path) -> None:
    """A Trainer of checkpoint_dir (<run>/checkpoints/<stage>): one line per evaluation, and TensorBoard's event
    files (when reported to) in <run>/tensorboard/<stage>/."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(OneLinePerEvaluation())
    for callback in trainer.callback_handler.callbacks:
        if type(callback).__name__ == "TensorBoardCallback" and getattr(callback, "logging_dir", None) is None:
            callback.logging_dir = str(checkpoint_dir.parent.parent / "tensorboard" / checkpoint_dir.name)
