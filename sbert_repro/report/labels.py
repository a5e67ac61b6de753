"""How the pages write things: numbers (rounded here, when printed, and nowhere else), models, data, machines."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from sbert_repro.report.markdown import record_file
from sbert_repro.runs.paths import PACKAGED_MODELS, looks_like_folder, model_label
from sbert_repro.runs.record_parts import Git, Hardware
from sbert_repro.runs.schema import Record


def mean_and_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1); no deviation from a single value."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1))


def format_score(mean: float, std: float | None = None) -> str:
    return f"{mean:.2f}" if std is None else f"{mean:.2f} +- {std:.2f}"


def format_gain(gain: float) -> str:
    return f"{round(gain, 2) + 0.0:+.2f}"  # + 0.0: no "-0.00"


def data_label(data_dir: str | Path | None, sources: Iterable[str] | None = None) -> str:
    """Where a run's data came from: local copies under --data-dir, else the hub. With the `sources` it read (a
    file or folder, or "hf:<dataset>@<commit>:<split>"), as they say: a task given as a local folder is local
    data without --data-dir."""
    from_hub = {source.startswith("hf:") for source in sources or ()}
    if not from_hub:
        return f"local copies ({Path(data_dir).name}/)" if data_dir else "Hugging Face hub"
    local = f"local copies ({Path(data_dir).name}/)" if data_dir else "local files"
    if from_hub == {True}:
        return "Hugging Face hub"
    return local if from_hub == {False} else f"{local} and the Hugging Face hub"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def commit_label(git: Git) -> str:
    return (git.commit or "?")[:10] + (" (dirty)" if git.dirty else "")


def machine_label(hardware: Hardware) -> str:
    return hardware.gpu or f"{hardware.cpu_cores} CPU cores ({hardware.cpu})"


def provenance(record: Record) -> dict[str, str]:
    """What a page says of where a benchmark's or a measurement's numbers come from: machine, commit, record."""
    return {"machine": machine_label(record.environment.hardware), "commit": commit_label(record.environment.git),
            "record": record_file(record)}


def short_model(model: str) -> str:
    """A model's label short enough for an axis or a legend: a hub id or a packaged model as model_label names it, a
    local folder by its name (its parent's where the folder is just 'model'), and "<folder> shape, random weights"
    as "<name> shape, random weights"."""
    folder, _, rest = model.partition(" ")
    name = model_label(folder)
    if folder not in PACKAGED_MODELS and (looks_like_folder(folder) or folder.endswith("/model")):
        path = Path(folder)
        name = path.parent.name if path.name == "model" and path.parent.name else path.name
    if rest.startswith("shape") and name.endswith("-shape"):
        name = name.removesuffix("-shape")
    return f"{name} {rest}".strip()


def knobs(parameters: dict[str, int]) -> str:
    return ", ".join(f"{name}={value}" for name, value in parameters.items()) or "-"
