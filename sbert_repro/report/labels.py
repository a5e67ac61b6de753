"""How the pages write things: numbers (rounded here, when printed, and nowhere else), models, data, machines."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


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


def data_label(config: dict[str, Any]) -> str:
    return f"local copies ({Path(config['data_dir']).name}/)" if config.get("data_dir") else "Hugging Face hub"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def commit_label(git: dict[str, Any]) -> str:
    return (git.get("commit") or "?")[:10] + (" (dirty)" if git.get("dirty") else "")


def machine_label(hardware: dict[str, Any]) -> str:
    return hardware.get("gpu") or f"{hardware['cpu_cores']} CPU cores ({hardware['cpu']})"


def short_model(model: str) -> str:
    """A model's label short enough for an axis: 'org/name/model' -> 'org', 'x shape, random weights' -> 'x shape'."""
    return model.split("/")[0].split(",")[0]


def knobs(parameters: dict[str, int]) -> str:
    return ", ".join(f"{name}={value}" for name, value in parameters.items()) or "-"
