"""The model: a Hugging Face encoder plus a pooling layer, as a sentence-transformers SentenceTransformer.

With mean pooling over a raw BERT this is the paper's "Avg. BERT embeddings" baseline; training the same
object siamese-style gives SBERT. A sentence-transformers folder (e.g. all-MiniLM-L6-v2) is rebuilt the
same way from its transformer weights, so --pooling means the same for every model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import pickle
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

from sbert_repro.config.hardware import resolve_device
from sbert_repro.errors import UsageError
from sbert_repro.runs.paths import looks_like_folder

logger = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
LONGEST_EVAL_SEQUENCE = 512  # BERT's position embeddings; also MTEB's cap


def for_inference(model: SentenceTransformer, precision: str) -> SentenceTransformer:
    """The model to encode with at a resolved `precision`: the model itself (fp32), or a copy with bf16
    weights, or with int8 Linear layers (weights quantized once, activations per batch); the model's own fp32
    weights, which training updates and save() writes, stay as they are."""
    if precision == "fp32":
        return model
    encoder = copy.deepcopy(model)
    if precision == "bf16":
        return encoder.to(torch.bfloat16)
    return torch.ao.quantization.quantize_dynamic(encoder, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def _check_local_model(path: Path) -> None:
    if not path.is_dir():
        raise UsageError(f"--model {path}: no such folder; give a local model folder or a Hugging Face model name")
    if not (path / "config.json").is_file():
        raise UsageError(f"--model {path}: no config.json in the folder; point at a Hugging Face model folder")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise UsageError(f"--model {path}: the folder has no weights ({', '.join(WEIGHT_FILES[::2])}); "
                         "download the model's weights into it or pick another folder")


def random_weight_model(shape_dir: Path, folder: Path) -> Path:
    """A model folder's config and tokenizer (bert-base-uncased's shape in ../shared/models: no weights) with
    random weights drawn with seed 0, saved to `folder`: the paper's architecture before any training."""
    if not (shape_dir / "config.json").is_file():
        raise UsageError(f"--random-weights {shape_dir}: no config.json there; give a model folder with a config and "
                         "tokenizer (weights are not needed)")
    torch.manual_seed(0)
    config = transformers.AutoConfig.from_pretrained(shape_dir)
    transformers.AutoModel.from_config(config).save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(shape_dir).save_pretrained(folder)
    return folder


def _is_local(model: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else that names a path is a local folder.
    return Path(model).expanduser().exists() or looks_like_folder(model)


def _sentence_bert_config(model: str) -> dict:
    """A sentence-transformers model's sentence_bert_config.json (local or on the hub); {} for a plain encoder."""
    path = Path(model) / "sentence_bert_config.json"
    if not path.is_file() and not _is_local(model):
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(model, "sentence_bert_config.json"))
        except Exception:  # noqa: BLE001 - no such file in the repository, or no hub: a plain encoder
            return {}
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def own_max_seq_length(model: str, transformer: Transformer) -> int:
    """The length the model was built to score at: its sentence_bert_config.json, else its tokenizer's."""
    length = _sentence_bert_config(model).get("max_seq_length")
    if not isinstance(length, int) or length <= 0:
        length = transformer.max_seq_length or LONGEST_EVAL_SEQUENCE
    return min(length, LONGEST_EVAL_SEQUENCE)


def build_model(model: str, pooling: str, device: str, trust_remote_code: bool = False) -> SentenceTransformer:
    """Transformer(model) + Pooling(pooling) on `device`; max_seq_length set to the model's own limit.

    Code shipped with a model runs only with `trust_remote_code`; weights load from safetensors where
    present, and a pickle checkpoint only with torch's weights_only loader (transformers' defaults, kept).
    """
    if _is_local(model):
        _check_local_model(Path(model).expanduser())
        model = str(Path(model).expanduser())
    try:
        remote = {"trust_remote_code": trust_remote_code}
        transformer = Transformer(model, model_kwargs=remote, config_kwargs=remote, processor_kwargs=remote)
    # Missing files, no hub, a model that needs remote code, a pickle the weights-only loader refuses.
    except (OSError, ValueError, pickle.UnpicklingError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "trust_remote_code" in str(error):
            raise UsageError(f"--model {model}: it ships its own code, which runs only with --trust-remote-code; "
                             "pass it only for a model you trust") from None
        raise UsageError(f"--model {model}: cannot load it ({first_line}); "
                         "offline, give a local model folder") from None
    transformer.max_seq_length = own_max_seq_length(model, transformer)
    pooling_layer = Pooling(transformer.get_embedding_dimension(), pooling_mode=pooling)
    return SentenceTransformer(modules=[transformer, pooling_layer], device=resolve_device(device))


def eval_max_seq_length(model: SentenceTransformer, requested: int | None) -> int:
    """The length to score at: `requested` (--eval-max-seq-length), else the model's own limit; never past
    its position embeddings."""
    if requested is None:
        return model.max_seq_length
    return check_positions(model, requested, "--eval-max-seq-length")


def position_limit(model: SentenceTransformer) -> int | None:
    """The tokens the model has position embeddings for (None where its config does not say)."""
    return getattr(model[0].auto_model.config, "max_position_embeddings", None)


def check_positions(model: SentenceTransformer, length: int, option: str) -> int:
    """`length`, if the model has position embeddings for that many tokens; else a UsageError naming `option`
    (past them, training or scoring would fail with an index error deep in the model)."""
    positions = position_limit(model)
    if positions is not None and length > positions:
        raise UsageError(f"{option} {length}: the model has only {positions} positions; give at most that")
    return length


def model_reference(model: str) -> str:
    """`model` as it resolves from any working directory: the absolute path of a local folder, else the hub id
    (a relative `org/name` that exists here is a folder, as build_model reads it)."""
    return os.path.abspath(Path(model).expanduser()) if _is_local(model) else model


def model_fingerprint(model: SentenceTransformer) -> str:
    """sha256 of the encoder's weights (names, dtypes, shapes and bytes of its fp32 state_dict, as loaded: the
    same for a safetensors and a pickle copy) and of its tokenizer (vocabulary and pipeline). Two models with
    the same fingerprint encode alike; take it before for_inference changes the number format."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model[0].auto_model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    tokenizer = model.tokenizer
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        # Truncation and padding are set per call, not part of the tokenizer: left out.
        pipeline = {key: value for key, value in json.loads(backend.to_str()).items()
                    if key not in ("truncation", "padding")}
    else:
        pipeline = {"vocab": sorted(tokenizer.get_vocab().items())}
    digest.update(json.dumps(pipeline, sort_keys=True).encode())
    return digest.hexdigest()


def encode(model: SentenceTransformer, sentences: list[str], batch_size: int,
           description: str = "encode", normalize: bool = True) -> tuple[np.ndarray, float]:
    """L2-normalised (unless not `normalize`) float32 embeddings of `sentences`, and sentences encoded per second."""
    start = time.perf_counter()
    # sentence-transformers sorts by length before batching, so padding stays small.
    embeddings = model.encode(sentences, batch_size=batch_size, normalize_embeddings=normalize,
                              convert_to_numpy=True, show_progress_bar=True)
    seconds = time.perf_counter() - start
    logger.info("%s: %d sentences in %.1fs", description, len(sentences), seconds)
    return np.ascontiguousarray(embeddings, dtype=np.float32), len(sentences) / max(seconds, 1e-9)
