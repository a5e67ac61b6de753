"""Under torchrun, the work a fine-tune does once (the baseline's scores, mining hard negatives, a re-ranker's
candidates, the final re-score) is done by the main process alone, and the others receive its result: N processes
would otherwise each encode the full data N times over, and could mine different negatives where candidates tie.
A plain run (one process) just does the work."""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import torch.distributed as distributed

from sbert_repro.errors import UsageError
from sbert_repro.runs.environment import is_main_process, world_size

logger = logging.getLogger(__name__)

Result = TypeVar("Result")

TRAINING_TIMEOUT = timedelta(minutes=30)  # transformers' Trainer's own default (ddp_timeout)
# The others wait while the main process scores or mines: on a large corpus, hours.
ONCE_ONLY_TIMEOUT = timedelta(hours=12)
_handover: list[Any] = []  # the gloo group results are handed over in, once made


def join_processes(device: str) -> None:
    """Under torchrun, the process group, made before any once-only work (the Trainer's accelerate state takes it
    over as it is): NCCL between GPUs, gloo between CPU processes; and a gloo group of its own to hand results over
    in, on the CPU whichever GPU each process took, with a timeout long enough for the once-only work."""
    if world_size() > 1 and not distributed.is_initialized():
        distributed.init_process_group("nccl" if device.startswith("cuda") else "gloo", timeout=TRAINING_TIMEOUT)
    if world_size() > 1 and not _handover:
        _handover.append(distributed.new_group(backend="gloo", timeout=ONCE_ONLY_TIMEOUT))


class MainProcessFailed:
    """What the main process hands the others when its once-only work raised: they stop too."""

    def __init__(self, what: str) -> None:
        self.what = what


def on_main_process(work: Callable[[], Result], what: str) -> Result:
    """`work()` done by the main process alone; under torchrun the others wait for it and receive its result
    (pickled, through the hand-over group). `what` names the work for the line the others print if it fails."""
    if not (distributed.is_available() and distributed.is_initialized()):
        return work()
    group = _handover[0] if _handover else None
    handed: list[Any] = [None]
    if is_main_process():
        try:
            handed[0] = pickle.dumps(work())  # pickled here, so that a result that cannot be is a failure too
        except BaseException:
            distributed.broadcast_object_list([pickle.dumps(MainProcessFailed(what))], src=0, group=group)
            raise
    else:
        logger.info("waiting for the main process: %s", what)
    distributed.broadcast_object_list(handed, src=0, group=group)
    result = pickle.loads(handed[0])
    if isinstance(result, MainProcessFailed):
        raise UsageError(f"the main process stopped while {result.what}; its own output says why")
    return result
