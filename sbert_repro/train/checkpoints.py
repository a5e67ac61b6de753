"""The Trainer's checkpoints: which are complete (trainer_state.json is the last file a checkpoint gets), and the
newest one to resume from."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"  # transformers.trainer.TRAINER_STATE_NAME: a checkpoint's last file


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
