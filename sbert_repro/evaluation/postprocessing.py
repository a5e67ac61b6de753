"""--postprocess as scoring applies it: a transform fitted without training (model/transforms.py) once on --fit-on,
or on each task's own sentences, and the transforms saved beside the run's record (`index --postprocess` reuses
one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sentence_transformers import SentenceTransformer

from sbert_repro.config.encoding import ScoringConfig
from sbert_repro.model.encoder import encode
from sbert_repro.model.transforms import Transform, fit_postprocess, save_transform
from sbert_repro.runs.paths import path_label


@dataclass
class Postprocessing:
    """--postprocess as scoring applies it: the option; the transform fitted once on --fit-on (None: one fitted on
    each task's own sentences); and, filled in as the tasks are scored, each task's transform and what it was
    fitted on."""

    option: str
    fit_on: Transform | None = None
    fit_on_label: str = ""
    fitted: dict[str, Transform] = field(default_factory=dict)
    fitted_on: dict[str, str] = field(default_factory=dict)

    def transform(self, task: str, own: np.ndarray, what: str) -> Transform:
        """The transform for `task`: the --fit-on one, else fitted on `own` (its `what`: "test sentences")."""
        self.fitted[task] = self.fit_on or fit_postprocess(self.option, own)
        self.fitted_on[task] = self.fit_on_label if self.fit_on else f"its own {len(own)} {what}"
        return self.fitted[task]


def postprocessing_for(config: ScoringConfig, model: SentenceTransformer, fit_on: list[str] | None
                       ) -> Postprocessing | None:
    """config.postprocess as scoring applies it (None without one); with --fit-on, its transform fitted now on
    `fit_on`, the file's sentences, encoded by `model`."""
    if config.postprocess is None:
        return None
    if fit_on is None:
        return Postprocessing(config.postprocess)
    vectors, _ = encode(model, fit_on, config.eval_batch_size, "--fit-on sentences", normalize=False)
    return Postprocessing(config.postprocess, fit_postprocess(config.postprocess, vectors),
                          f"{path_label(str(config.fit_on))}: {len(fit_on)} sentences")


def save_transforms(postprocess: Postprocessing, folder: Path) -> dict[str, object]:
    """Each task's transform as folder/postprocess/<task>.npz (`index --postprocess` reuses one); what the record
    says of them."""
    (folder / "postprocess").mkdir(parents=True, exist_ok=True)
    for task, transform in postprocess.fitted.items():
        save_transform(transform, folder / "postprocess" / f"{task}.npz")
    return {"option": postprocess.option, "fitted_on": dict(postprocess.fitted_on),
            # what each transform keeps (plain whiten: the directions its fit set spans)
            "dimensions": {task: int(transform.projection.shape[1]) for task, transform in postprocess.fitted.items()},
            "files": {task: f"postprocess/{task}.npz" for task in postprocess.fitted}}
