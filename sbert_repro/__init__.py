"""sbert-repro: a reproduction of Sentence-BERT (Reimers & Gurevych, 2019, arXiv 1908.10084).

The Python API is the command line's, one call per command:

    from sbert_repro import EvaluateConfig, TrainConfig, evaluate, finetune

    record = evaluate(EvaluateConfig(model="bert-base-uncased", output_dir=Path("runs/raw")))
    records = finetune(TrainConfig(output_dir=Path("runs/sbert-stsb")))  # one record per seed

A config built here is the one the command line builds from the same options (TrainConfig(objective="retrieval")
has the retrieval recipe), and a call writes the same run folder. `model` is a hub name or a folder: a model
loaded in Python is not taken, since a record must name what it scored; save it first (`model.save(folder)`).
The stages, and which module holds what, are listed in README.md ("How the code is laid out").
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["EvaluateConfig", "TrainConfig", "evaluate", "finetune"]

# Where each public name lives. Imported on first use: the configs are instant, the commands bring torch.
_PUBLIC = {"EvaluateConfig": "sbert_repro.config.encoding", "TrainConfig": "sbert_repro.config.training",
           "evaluate": "sbert_repro.pipeline.evaluate_run", "finetune": "sbert_repro.pipeline.finetune_run"}


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'sbert_repro' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value
