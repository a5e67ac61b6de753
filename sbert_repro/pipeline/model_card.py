"""The card a fine-tuned model is saved with (sentence-transformers writes README.md from its model_card_data): the
base model, the training data (each stage's task and split, or file), the objective and loss, and, below the
library's own sections, the test scores of the run's record beside the raw model's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer

from sbert_repro.config.training import TrainConfig
from sbert_repro.runs.paths import model_label, path_label
from sbert_repro.runs.records import write_text_atomic

CARD = "README.md"


def describe_training(model: SentenceTransformer, config: TrainConfig, record: dict[str, Any]) -> list[str]:
    """Fill the model's card data before it is saved (never asking the hub: a card is written offline too); the
    losses its Trainer recorded, by class, one per training stage where it recorded them."""
    card = model.model_card_data
    card.local_files_only = True
    base = model_label(path_label(config.model))
    card.base_model = base  # set as given: the library would accept only an id it can look up on the hub
    stages = record["training_stages"]
    card.model_name = f"{base} fine-tuned by sbert-repro ({config.objective}, seed {config.seed})"
    names = [f"{stage['train_data']} ({stage['objective']}, {stage['train_pairs']} pairs)" for stage in stages]
    inferred = list(card.train_datasets)
    if len(inferred) == len(names):  # the Trainer's own entries (columns, loss, samples): named, not replaced
        card.train_datasets = [{**entry, "name": name} for entry, name in zip(inferred, names, strict=True)]
    else:
        card.train_datasets = [{"name": name} for name in names]
    card.add_tags(["sbert-repro", config.objective])
    return [str(entry.get("loss", {}).get("fullname", "")).rsplit(".", 1)[-1] for entry in inferred
            if isinstance(entry.get("loss"), dict)]


def append_scores(folder: Path, config: TrainConfig, record: dict[str, Any], losses: list[str]) -> None:
    """The run's test scores (x100) under the card the library wrote in `folder`."""
    trained = ", ".join(stage["objective"] for stage in record["training_stages"])
    lines = ["", "## Test scores (sbert-repro)", "",
             f"Base model `{model_label(path_label(config.model))}`; objective `{config.objective}` (stages {trained}; "
             f"loss {', '.join(losses) or 'as the record names it'}); "
             f"seed {config.seed}. Scores x100 on each task's test split, from the run's record.", "",
             "| task | metric | base model | this model |", "|---|---|---:|---:|"]
    before = record["baseline"]["scores"]
    for key, value in record["finetuned"]["scores"].items():
        task, metric = key.split("/", 1)
        raw = f"{before[key]:.2f}" if key in before else "-"
        lines.append(f"| {task} | {metric} | {raw} | {value:.2f} |")
    card = folder / CARD
    existing = card.read_text(encoding="utf-8") if card.is_file() else ""
    write_text_atomic(card, existing.rstrip("\n") + "\n" + "\n".join(lines) + "\n")
