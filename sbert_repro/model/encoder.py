"""The model, as a sentence-transformers SentenceTransformer: a sentence-transformers model (modules.json) as
`SentenceTransformer(path)` loads it, with its own modules (pooling, Dense, Normalize) and prompts; a plain Hugging
Face encoder plus mean pooling.

With mean pooling over a raw BERT this is the paper's "Avg. BERT embeddings" baseline; training the same
object siamese-style gives SBERT. An explicit --pooling rebuilds any model as its transformer plus that pooling,
so that a pooling ablation means the same for every model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

from sbert_repro.config.encoding import DEFAULT_POOLING
from sbert_repro.config.hardware import resolve_device
from sbert_repro.data.corpus import set_sha256
from sbert_repro.data.hub import hub_error_reason, hub_offline
from sbert_repro.errors import UsageError
from sbert_repro.model.model_files import check_local_model, check_weights_match, checked_tokenizer
from sbert_repro.runs import progress
from sbert_repro.runs.paths import looks_like_folder

logger = logging.getLogger(__name__)

LONGEST_EVAL_SEQUENCE = 512  # BERT's position embeddings; also MTEB's cap


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
    return _model_json(model, "sentence_bert_config.json") or {}


def _model_json(model: str, name: str) -> dict | list | None:
    """The JSON file `name` of a model folder or hub repository; None where it has none. Only "no such file" (in
    the repository, or in the offline cache) means none: any other hub failure is raised, never read as a plain
    encoder, which would score a model without its own modules."""
    path = Path(model) / name
    if not path.is_file() and not _is_local(model):
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        try:
            path = Path(hf_hub_download(model, name))
        except (EntryNotFoundError, LocalEntryNotFoundError):
            return None
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"--model {model}: its {name} is not valid JSON; restore the file that came with the "
                         "model") from None


def own_max_seq_length(model: str, transformer: Transformer) -> int:
    """The length the model was built to score at: its sentence_bert_config.json, else its tokenizer's."""
    length = _sentence_bert_config(model).get("max_seq_length")
    if not isinstance(length, int) or length <= 0:
        length = transformer.max_seq_length or LONGEST_EVAL_SEQUENCE
    return min(length, LONGEST_EVAL_SEQUENCE)


# Weights are loaded in fp32 whatever dtype a checkpoint was saved in (transformers 5 loads one in the dtype its config
# names): an update of lr 2e-5 is far below bf16's resolution near |w| = 0.05, and fp16 weights cannot be trained with
# a gradient scaler. --precision decides what is computed in: autocast, in training and in scoring (model/precision.py).
FP32_WEIGHTS = {"dtype": torch.float32}


def build_model(model: str, pooling: str | None, device: str, trust_remote_code: bool = False) -> SentenceTransformer:
    """The model on `device`, max_seq_length set to its own limit: with `pooling` None, a sentence-transformers
    model as SentenceTransformer(model) loads it and a plain encoder as Transformer(model) + mean pooling; with
    `pooling` given, Transformer(model) + Pooling(pooling) for either (one line says what a sentence-transformers
    model leaves out then).

    Code shipped with a model runs only with `trust_remote_code`; weights load from safetensors where
    present, and a pickle checkpoint only with torch's weights_only loader (transformers' defaults, kept).
    """
    if _is_local(model):
        check_local_model(Path(model).expanduser())
        model = str(Path(model).expanduser())
    with _loading(model):  # a hub that answers with an error says so in one line
        own_modules = _model_json(model, "modules.json")
    # the transformer's own folder (an older sentence-transformers model keeps it in 0_Transformer/)
    weights = Path(model) / str(own_modules[0].get("path", "") if isinstance(own_modules, list) and own_modules and
                                isinstance(own_modules[0], dict) else "")
    if isinstance(own_modules, list) and pooling is None:
        return _as_saved(checked_tokenizer(_as_given(model, device, trust_remote_code), model), weights)
    if isinstance(own_modules, list):
        types = [str(entry.get("type", "?")).rsplit(".", 1)[-1] for entry in own_modules if isinstance(entry, dict)]
        logger.warning("--pooling %s: %s is rebuilt as its transformer + %s pooling; its own modules after the "
                       "transformer (%s) are left out", pooling, model, pooling,
                       ", ".join(name for name in types if name != "Transformer") or "none")
    with _loading(model):
        remote = {"trust_remote_code": trust_remote_code}
        transformer = Transformer(model, model_kwargs={**remote, **FP32_WEIGHTS}, config_kwargs=remote,
                                  processor_kwargs=remote)
    transformer.max_seq_length = own_max_seq_length(model, transformer)
    pooling_layer = Pooling(transformer.get_embedding_dimension(), pooling_mode=pooling or DEFAULT_POOLING)
    return _as_saved(checked_tokenizer(SentenceTransformer(modules=[transformer, pooling_layer],
                                                           device=resolve_device(device)), model), weights)


def _as_saved(model: SentenceTransformer, weights: Path) -> SentenceTransformer:
    if weights.is_dir():  # a local folder: the hub's files are what their model card says they are
        check_weights_match(model, weights)
    return model



@contextmanager
def _loading(model: str) -> Iterator[None]:
    """A model that cannot be loaded, as one line naming it."""
    try:
        yield
    except RuntimeError as error:  # transformers' word for weights whose shapes are not the config's
        if "corrupted" in str(error) or "central directory" in str(error):  # torch's for a damaged checkpoint
            raise UsageError(f"--model {model}: its weights file cannot be read (torch: the checkpoint is damaged or "
                             "cut short); copy the model again") from None
        if "mismatched" not in str(error) and "size mismatch" not in str(error):
            raise
        raise UsageError(f"--model {model}: its config.json does not match its weights (tensor shapes differ, as "
                         "transformers' load report lists: --verbose shows it); restore the config.json that came "
                         "with the weights") from None
    # Missing files, no hub, a model that needs remote code, a pickle the weights-only loader refuses.
    except (OSError, ValueError, pickle.UnpicklingError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "Weights only load failed" in str(error) and ("Unsupported" in str(error) or "allowed global" in str(error)):
            # torch's own text suggests loading with weights_only=False, which would run the file's code
            raise UsageError(f"--model {model}: its weights are a pickle that torch's safe loader refuses (it holds "
                             "more than tensors, or is no torch checkpoint), and reading it otherwise could run code; "
                             "give the model as safetensors (converted from a copy you trust), or another model") \
                from None
        if "trust_remote_code" in str(error):
            raise UsageError(f"--model {model}: it ships its own code, which runs only with --trust-remote-code; "
                             "pass it only for a model you trust") from None
        if (answered := hub_error_reason(error)) is not None:  # the hub is there, and said no
            raise UsageError(f"--model {model}: cannot load it from the Hugging Face hub: {answered}") from None
        raise UsageError(f"--model {model}: cannot load it ({first_line}); "
                         f"{'offline, ' if hub_offline() else ''}give a local model folder") from None


def _as_given(model: str, device: str, trust_remote_code: bool) -> SentenceTransformer:
    """A sentence-transformers model with its own modules and prompts, scored at its own length."""
    with _loading(model):
        loaded = SentenceTransformer(model, device=resolve_device(device), trust_remote_code=trust_remote_code,
                                     model_kwargs=FP32_WEIGHTS)
    if not isinstance(loaded[0], Transformer):
        # Lengths, positions and fingerprints are read from the transformer a model starts with.
        raise UsageError(f"--model {model}: its first module is a {type(loaded[0]).__name__}, not a Transformer; "
                         "give a model built on a Hugging Face transformer")
    loaded.max_seq_length = own_max_seq_length(model, loaded[0])
    return loaded


def module_names(model: SentenceTransformer) -> list[str]:
    """The modules a model scores with, for the record: ["Transformer", "Pooling(mean)", "Dense(384->256)",
    "Normalize"]."""
    names = []
    for module in model:
        name = type(module).__name__
        if isinstance(module, Pooling):
            mode = module.pooling_mode
            name += f"({mode if isinstance(mode, str) else '+'.join(mode)})"
        elif hasattr(module, "in_features") and hasattr(module, "out_features"):
            name += f"({module.in_features}->{module.out_features})"
        names.append(name)
    return names


@dataclass(frozen=True)
class Prompts:
    """The text put before each query and each document a retrieval task encodes (None: the model's own default,
    as sentence-transformers' encode_query and encode_document apply it)."""

    query: str | None = None
    document: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"query": self.query, "document": self.document}


def resolve_prompt(model: SentenceTransformer, text: str | None, name: str | None, role: str) -> str | None:
    """The prompt for `role` ("query" or "document"): `text` as given, else the model's prompt called `name` (a
    name it lacks is one line), else the model's own prompt for the role, where it defines one."""
    if text is not None:
        return text
    if name is not None:
        if name not in model.prompts:
            defined = ", ".join(sorted(model.prompts)) or "none"
            raise UsageError(f"--{role}-prompt-name {name!r}: the model defines no such prompt (it has: {defined}); "
                             f"give one of those, or the text itself with --{role}-prompt")
        return model.prompts[name]
    return model.prompts.get(role)


def resolve_prompts(model: SentenceTransformer, config: Any) -> Prompts:
    """A config's --query-prompt(-name) and --document-prompt(-name) against the model's own prompts."""
    return Prompts(resolve_prompt(model, config.query_prompt, config.query_prompt_name, "query"),
                   resolve_prompt(model, config.document_prompt, config.document_prompt_name, "document"))


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
    _hash_tensors(digest, model[0].auto_model.state_dict())
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


def model_setup(model: SentenceTransformer) -> dict[str, Any]:
    """What else than the transformer's weights and tokenizer (model_fingerprint) changes a model's vectors: its
    modules in order (pooling mode, Dense sizes, Normalize) and a sha256 of every module after the transformer, its
    config and weights (a Dense layer retrained, a pooling config edited at the same path)."""
    digest = hashlib.sha256()
    for module in list(model)[1:]:
        config = module.get_config_dict() if hasattr(module, "get_config_dict") else {}
        digest.update(f"{type(module).__name__}:{json.dumps(config, sort_keys=True, default=str)}\n".encode())
        _hash_tensors(digest, module.state_dict())
    return {"modules": module_names(model), "modules_sha256": digest.hexdigest()}


def run_fingerprints(model: SentenceTransformer, sets: dict[str, Any]) -> dict[str, Any]:
    """What a run's results are made from, for its record (and a fine-tune's --resume): the raw model's
    fingerprints (model_fingerprint; model_setup's modules), the prompts and length it brings (its
    config_sentence_transformers.json and sentence_bert_config.json), and a sha256 of each set as loaded, by name,
    so that data edited or reordered since, or another model at the same path, shows."""
    return {"model_sha256": model_fingerprint(model), "modules_sha256": model_setup(model)["modules_sha256"],
            "model_prompts": dict(model.prompts or {}), "model_max_seq_length": model.max_seq_length,
            "data_sha256": {name: set_sha256(rows) for name, rows in sets.items()}}


def _hash_tensors(digest: Any, state: dict[str, torch.Tensor]) -> None:
    """Each tensor's name, dtype, shape and bytes, in name order, into `digest`."""
    for name, tensor in sorted(state.items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())


def shown(value: Any, width: int = 16) -> str:
    """A recorded setting as a one-line message shows it: a list joined, anything else cut to `width` characters."""
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)[:width]


def setup_mismatch(recorded: dict[str, Any], current: dict[str, Any]) -> str | None:
    """The first of model_setup's fields `recorded` holds that `current` does not match, as "field: recorded X,
    now Y"; None where they match."""
    for key, value in current.items():
        if key in recorded and recorded[key] != value:
            return f"{key}: recorded {shown(recorded[key], 12)}, now {shown(value, 12)}"
    return None


def encode(model: SentenceTransformer, sentences: list[str], batch_size: int,
           description: str = "encode", normalize: bool = True, role: str | None = None,
           prompt: str | None = None) -> tuple[np.ndarray, float]:
    """L2-normalised (unless not `normalize`) float32 embeddings of `sentences`, and sentences encoded per second.
    With `role` "query" or "document", through sentence-transformers' encode_query or encode_document, with
    `prompt` (None: the model's own for that role); STS sentences take neither."""
    start = time.perf_counter()
    options = {"batch_size": batch_size, "normalize_embeddings": normalize, "convert_to_numpy": True,
               "show_progress_bar": progress.bars_shown()}
    # sentence-transformers sorts by length before batching, so padding stays small. An encoder with encode()
    # alone (no roles, no prompts) is encoded with it.
    if role is None or not hasattr(model, f"encode_{role}"):
        embeddings = model.encode(sentences, **options)
    else:
        embeddings = getattr(model, f"encode_{role}")(sentences, prompt=prompt, **options)
    seconds = time.perf_counter() - start
    logger.info("%s: %d sentences in %.1fs", description, len(sentences), seconds)
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    check_vectors(embeddings, description, sentences)
    return embeddings, len(sentences) / max(seconds, 1e-9)


DISTINCT_TEXTS = 16  # different texts all encoding to one vector: a constant model, not near-duplicates


def check_vectors(vectors: np.ndarray, where: str, texts: list[str], first_row: int = 0) -> None:
    """A UsageError naming the first of `vectors` (the embeddings of `texts`, rows from `first_row` on) that holds
    NaN or infinities (a model can overflow in fp16) or is all zeros (no direction, so no cosine), or saying that
    different texts all got one vector (a model whose weights are constant, all zero say), before any of them reaches
    an index, a search or a record."""
    sums = vectors.sum(axis=1, dtype=np.float64)  # a row's sum, not an n x d mask
    bad = np.flatnonzero(~np.isfinite(sums))
    what = "NaN or infinities"
    if not len(bad):  # an empty text may encode to zeros (a static embedding model); any other may not
        bad = np.array([row for row in np.flatnonzero(~np.any(vectors, axis=1)) if texts[row].strip()], dtype=int)
        what = "a vector of zeros"
    if len(bad):
        text = texts[bad[0]]
        others = f", as do {len(bad) - 1} more of the {len(vectors)} encoded with it" if len(bad) > 1 else ""
        raise UsageError(f"{where}: row {first_row + int(bad[0])} ({text[:40]!r}{'...' if len(text) > 40 else ''}) "
                         f"encodes to {what}{others}; the model overflows or its weights are damaged: "
                         "try --precision bf16 or fp32")
    # judged on many different texts: two near-duplicates ("Paris", "paris" under an uncased model) may well agree
    if len(set(texts)) >= DISTINCT_TEXTS and not np.ptp(vectors, axis=0).any():
        raise UsageError(f"{where}: all {len(vectors)} texts (rows {first_row} to {first_row + len(vectors) - 1}) "
                         "encode to one same vector; the model's weights are damaged or constant (all zero, say): "
                         "check them (sbert-repro geometry measures a model's vectors)")
