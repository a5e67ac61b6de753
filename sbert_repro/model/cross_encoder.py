"""The cross-encoder as a model: both sentences of a pair in one input, one score out (the paper's BERT cross-encoder
of Table 2). A new one is the encoder's weights under a new one-output head; a trained one is loaded as
sentence-transformers' `CrossEncoder` reads it, after a check that it has a classification head."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sentence_transformers.cross_encoder import CrossEncoder

from sbert_repro.errors import UsageError
from sbert_repro.model.encoder import FP32_WEIGHTS, LONGEST_EVAL_SEQUENCE
from sbert_repro.model.model_files import WEIGHT_FILES, checked_tokenizer
from sbert_repro.model.precision import for_inference
from sbert_repro.runs.paths import looks_like_folder

BASELINE_IS = ("bi-encoder cosine of the raw model (the same --model and --pooling): a cross-encoder's new head is "
               "untrained, so the raw model is scored as the bi-encoder it is")


RERANKED_IS = ("the baseline's exact search (the raw model as a bi-encoder), each query's top --rerank-top-k "
               "re-ranked by the trained cross-encoder; the rest below them in the search's order")


# Scores a list of (first, second) text pairs: a CrossEncoder's predict, or a stand-in in tests.
PairScorer = Callable[[list[tuple[str, str]]], np.ndarray]


def fit_length(model: CrossEncoder, length: int | None) -> CrossEncoder:
    """`length` tokens per pair, else the model's own limit; never past its position embeddings (a tokenizer without
    a limit would otherwise let a long pair run past them)."""
    positions = getattr(model.config, "max_position_embeddings", None) or LONGEST_EVAL_SEQUENCE
    own = model.max_seq_length or LONGEST_EVAL_SEQUENCE
    model.max_seq_length = min(length or own, own, positions, LONGEST_EVAL_SEQUENCE)
    return model


def new_cross_encoder(model: str, device: str, trust_remote_code: bool = False,
                      max_length: int | None = None) -> CrossEncoder:
    """The encoder's weights of `model` (a raw encoder, or a sentence-transformers folder whose transformer sits at
    its root, as encoder.build_model reads it) under a new one-output classification head, randomly initialised from
    the current seed. Built module by module: CrossEncoder(path) would read a bi-encoder folder's modules.json and
    rebuild the bi-encoder."""
    from sentence_transformers.base.modules import Transformer

    remote = {"trust_remote_code": trust_remote_code}
    try:
        transformer = Transformer(model, transformer_task="sequence-classification",
                                  model_kwargs={**remote, **FP32_WEIGHTS}, processor_kwargs=remote,
                                  config_kwargs={**remote, "num_labels": 1})
    except (OSError, ValueError) as error:
        raise UsageError(f"--model {model}: cannot load it as a cross-encoder ({str(error).strip()[:200]})") from None
    return fit_length(checked_tokenizer(CrossEncoder(modules=[transformer], device=device), model), max_length)


def _model_files(model: str) -> dict[str, dict[str, Any]]:
    """A model's config.json and config_sentence_transformers.json ({} where absent), locally or from the hub."""
    found = {}
    for name in ("config.json", "config_sentence_transformers.json"):
        path = Path(model) / name
        if not path.is_file() and not looks_like_folder(model) and not Path(model).exists():
            try:
                from huggingface_hub import hf_hub_download

                path = Path(hf_hub_download(model, name))
            except Exception:  # noqa: BLE001 - no such file in the repository, or no hub
                pass
        found[name] = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return found


def check_cross_encoder(model: str, option: str = "--rerank") -> None:
    """`model` must be a cross-encoder: a classification head (architectures ...ForSequenceClassification), and not
    saved as a SentenceTransformer (a bi-encoder, which embeds single sentences: re-ranking with it would mean a
    random head on its encoder)."""
    if (looks_like_folder(model) or Path(model).exists()) and not Path(model).is_dir():
        raise UsageError(f"{option} {model}: no such folder; give a cross-encoder's folder or hub name")
    files = _model_files(model)
    modules = Path(model) / "modules.json"
    pooled = modules.is_file() and "Pooling" in modules.read_text(encoding="utf-8")
    if files["config_sentence_transformers.json"].get("model_type") == "SentenceTransformer" or pooled:
        raise UsageError(f"{option} {model}: a bi-encoder (SentenceTransformer) folder, not a cross-encoder; give a "
                         "model with a classification head, such as `finetune --objective cross-encoder`'s model/")
    if not files["config.json"]:
        raise UsageError(f"{option} {model}: no config.json; give a cross-encoder's folder or hub name")
    architectures = files["config.json"].get("architectures") or []
    if not any(name.endswith("ForSequenceClassification") for name in architectures):
        raise UsageError(f"{option} {model}: no classification head ({', '.join(architectures) or 'no architecture'}"
                         "); a raw encoder would re-rank by a random head: give a trained cross-encoder")
    if Path(model).is_dir() and not any((Path(model) / name).is_file() for name in WEIGHT_FILES):
        raise UsageError(f"{option} {model}: the folder has no weights ({', '.join(WEIGHT_FILES[::2])})")


def load_cross_encoder(model: str, device: str, trust_remote_code: bool = False, option: str = "--rerank"
                       ) -> CrossEncoder:
    """A trained cross-encoder, checked first (check_cross_encoder), at its own length."""
    check_cross_encoder(model, option)
    try:
        loaded = CrossEncoder(model, device=device, trust_remote_code=trust_remote_code, model_kwargs=FP32_WEIGHTS)
    except (OSError, ValueError) as error:
        raise UsageError(f"{option} {model}: cannot load it ({str(error).strip()[:200]})") from None
    return fit_length(checked_tokenizer(loaded, model, option), None)


def pair_scorer(model: CrossEncoder, batch_size: int, precision: str = "fp32") -> PairScorer:
    """The model's predict (after its sigmoid: scores in 0..1) as a PairScorer, computed in `precision` (resolved:
    fp32, bf16 or fp16 autocast, int8) as the bi-encoder beside it is, so that their costs compare."""
    model = for_inference(model, precision)

    def score(pairs: list[tuple[str, str]]) -> np.ndarray:
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(model.predict(pairs, batch_size=batch_size, show_progress_bar=False,
                                        convert_to_numpy=True), dtype=np.float32).reshape(-1)
    return score
