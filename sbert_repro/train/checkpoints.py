"""The Trainer's checkpoints: which are complete (trainer_state.json is the last file a checkpoint gets), which can
be loaded, and the newest one to resume from.

A complete checkpoint that cannot be loaded (a weights file cut short, a file that is not what its name says, a
pickle torch's weights-only loader refuses) is set aside under another name, never deleted: it may be the only copy
of hours of training. Nothing in a checkpoint is unpickled with code execution: torch files are read only by
torch's weights-only loader, with the numpy types transformers allows for its random states.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"  # transformers.trainer.TRAINER_STATE_NAME: a checkpoint's last file


def is_complete_checkpoint(folder: Path) -> bool:
    """A checkpoint the Trainer finished writing: it writes trainer_state.json after the weights, optimizer,
    scheduler and random states, so a run killed while saving leaves a folder without it (or with it cut off)."""
    has_weights = any((folder / name).is_file() for name in ("model.safetensors", "pytorch_model.bin",
                                                              "model.safetensors.index.json",
                                                              "pytorch_model.bin.index.json"))
    try:
        json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return has_weights


def unusable_reason(folder: Path) -> str | None:
    """Why the complete checkpoint `folder` cannot be resumed from, in a few words naming the file; None if every
    file the Trainer loads back reads: its JSON files, its safetensors weights, its torch files (optimizer,
    scheduler, random states). training_args.bin is never loaded back, so never read."""
    from safetensors import safe_open
    from transformers.trainer_pt_utils import safe_globals

    for path in sorted(folder.rglob("*")):
        try:
            if path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            elif path.suffix == ".safetensors":
                with safe_open(path, "pt"):  # checks the header and that the file holds every tensor it names
                    pass
            elif path.suffix in (".pt", ".pth") or path.name == "pytorch_model.bin":
                with safe_globals():
                    torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as error:  # noqa: BLE001 - whatever the reader says, the file cannot be resumed from
            said = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
            return f"{path.relative_to(folder)}: {said}"
    return None


SET_ASIDE = "unusable-"  # not "checkpoint-*": the Trainer neither resumes from it nor deletes it as an old one


def set_aside(folder: Path) -> Path:
    """Rename a checkpoint that cannot be loaded out of the Trainer's way; returns its new path."""
    target, number = folder.with_name(SET_ASIDE + folder.name), 1
    while target.exists():
        number += 1
        target = folder.with_name(f"{SET_ASIDE}{folder.name}.{number}")
    try:
        folder.rename(target)
    except FileNotFoundError:  # under torchrun every process resumes: another one set it aside first
        pass
    return target


def last_complete_checkpoint(checkpoint_dir: Path, tidy: bool = False) -> str | None:
    """The newest complete checkpoint-N in `checkpoint_dir` (None if there is none). With `tidy` (resuming), newer
    incomplete ones are deleted, with one warning line (resuming before them, the Trainer saves them again), and
    complete ones that cannot be loaded are set aside, one warning line each; the newest that loads is returned."""
    if not checkpoint_dir.is_dir():
        return None
    found = sorted((int(match.group(1)), path) for path in checkpoint_dir.iterdir()
                   if path.is_dir() and (match := re.fullmatch(r"checkpoint-(\d+)", path.name)))
    incomplete = []
    while found and not is_complete_checkpoint(found[-1][1]):
        incomplete.append(found.pop()[1])
    if not tidy:
        return str(found[-1][1]) if found else None
    unusable = []
    while found and (reason := unusable_reason(found[-1][1])):
        unusable.append((found.pop()[1], reason))
    latest = str(found[-1][1]) if found else None
    then = f"resuming from {Path(latest).name}" if latest else "no complete checkpoint, starting afresh"
    if incomplete:
        logger.warning("%s: incomplete (the run stopped while saving it), deleted; %s",
                       ", ".join(path.name for path in incomplete), then)
        for path in incomplete:
            shutil.rmtree(path)
    for path, reason in unusable:
        logger.warning("%s: cannot be loaded (%s); set aside as %s, not deleted; %s", path.name, reason,
                       set_aside(path).name, then if latest else "no usable checkpoint, starting afresh")
    return latest


def remove_checkpoints(folder: Path) -> None:
    """Delete a finished run's checkpoints (every stage's folder under `folder`), but none set aside as unusable."""
    if not any(folder.glob(f"*/{SET_ASIDE}*")):
        shutil.rmtree(folder, ignore_errors=True)
        return
    for path in folder.glob("*/*"):
        if path.name.startswith(SET_ASIDE):
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
