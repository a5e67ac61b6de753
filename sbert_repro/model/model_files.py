"""A model folder checked before it is loaded (its files, weights, layer count, model_type) and after (every
weight found in its files, a tokenizer that knows words and fits the embedding table): a model is used as saved, or
refused in one line, never scored half-random with only a library's load report to say so."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import transformers
from sentence_transformers import SentenceTransformer

from sbert_repro.errors import UsageError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def check_local_model(path: Path) -> None:
    if not path.is_dir():
        raise UsageError(f"--model {path}: no such folder; give a local model folder or a Hugging Face model name")
    if not (path / "config.json").is_file():
        raise UsageError(f"--model {path}: no config.json in the folder; point at a Hugging Face model folder")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise UsageError(f"--model {path}: the folder has no weights ({', '.join(WEIGHT_FILES[::2])}); "
                         "download the model's weights into it or pick another folder")
    _check_weight_files(path)
    _check_layers(path)


# Where a transformer's weights number its layers: BERT's encoder.layer.N, GPT's h.N, T5's block.N, most others'
# layers.N. A config that asks for more layers than the weights hold would get the rest drawn at random, silently.
LAYER_KEY = re.compile(r"(?:^|\.)(?:layer|layers|h|block)\.(\d+)\.")


def _check_layers(path: Path) -> None:
    """config.json's layer count against the layers the safetensors weights hold, in one line when it asks for more."""
    from safetensors import safe_open

    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # the loader names a config it cannot read
    wanted = next((config[key] for key in ("num_hidden_layers", "n_layer", "num_layers")
                   if isinstance(config, dict) and isinstance(config.get(key), int)), None)
    held: set[int] = set()
    for weights in sorted(path.glob("*.safetensors")):
        with safe_open(weights, "pt") as tensors:
            # an encoder's layers: T5's decoder.block.N are not what num_layers counts
            held.update(int(match.group(1)) for key in tensors.keys()
                        if "decoder." not in key and (match := LAYER_KEY.search(key)))
    if wanted is not None and held and max(held) + 1 < wanted:
        raise UsageError(f"--model {path}: config.json asks for {wanted} layers and the weights hold {max(held) + 1}; "
                         "the rest would be drawn at random: restore the config.json that came with the weights")
    if wanted is not None and held and max(held) + 1 > wanted:
        raise UsageError(f"--model {path}: config.json asks for {wanted} layers and the weights hold {max(held) + 1}; "
                         "the last would be dropped: restore the config.json that came with the weights")
    _check_model_type(path, config)


def _check_model_type(path: Path, config: Any) -> None:
    """config.json's model_type against the architectures it names: a model_type changed by hand loads the weights as
    another architecture (RoBERTa's names its modules as BERT's), and scores without a word."""
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(config, dict) or "auto_map" in config:  # code shipped with the model names its own types
        return
    for architecture in (config.get("architectures") or []) if isinstance(config, dict) else []:
        own = getattr(getattr(transformers, str(architecture), None), "config_class", None)
        if model_type and getattr(own, "model_type", model_type) not in (model_type, ""):
            raise UsageError(f"--model {path}: config.json says model_type {model_type!r}, and the architecture it "
                             f"names ({architecture}) is {own.model_type!r}'s: restore the config.json that came "
                             "with the weights")


_RENAMED = {"gamma": "weight", "beta": "bias"}
_LEGACY = re.compile(r"(?<=LayerNorm\.)(gamma|beta)$")


def check_weights_match(model: SentenceTransformer, path: Path) -> None:
    """Every parameter of the transformer found in the folder's safetensors weights (the pooler aside: BERT's MLM
    checkpoints have none, and mean pooling never reads it): weights whose names match nothing are left at random
    by transformers, with only a load report to say so."""
    from safetensors import safe_open

    files = sorted(path.glob("*.safetensors"))
    transformer = getattr(model[0], "auto_model", None)
    if not files or transformer is None:
        return
    held: set[str] = set()
    for weights in files:
        with safe_open(weights, "pt") as tensors:
            held.update(tensors.keys())
    prefix = f"{getattr(transformer, 'base_model_prefix', '')}."
    # as transformers reads a checkpoint: without the base model's prefix, and the original BERT's LayerNorm gamma and
    # beta as weight and bias (the hub's bert-base-uncased is saved so)
    held |= {_LEGACY.sub(lambda match: _RENAMED[match.group(1)], key.removeprefix(prefix)) for key in held}
    # parameters, not the state_dict: a weight tied to another (T5's shared embeddings) is listed once and saved once
    missing = [name for name, _ in transformer.named_parameters()
               if name not in held and not name.startswith("pooler.")]
    if missing:
        raise UsageError(f"--model {path}: {len(missing)} of the model's weights are not in its weight files (e.g. "
                         f"{missing[0]!r}), and would be drawn at random: the weights are another architecture's "
                         "or were renamed; restore the files that came with the model")


def _check_weight_files(path: Path) -> None:
    """Weights cut short or empty (a failed download or copy) named before loading, in one line."""
    from safetensors import safe_open

    for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        if weights.stat().st_size == 0:
            raise UsageError(f"--model {path}: {weights.name} is empty; download or copy the model's weights again")
        if weights.suffix == ".safetensors":
            try:
                with safe_open(weights, "pt"):  # reads the header; checks the file holds every tensor it names
                    pass
            except Exception as error:  # noqa: BLE001 - safetensors' own error type, whatever it says
                raise UsageError(f"--model {path}: {weights.name} cannot be read ({str(error).strip()[:160]}): it "
                                 "is cut short or not a safetensors file; download or copy it again") from None


# Words any vocabulary for text has some of: a tokenizer that knows none of them has no vocabulary for this model.
PROBE_SENTENCE = "The cat is here, and we like it."


def checked_tokenizer(model: Any, name: str, option: str = "--model") -> Any:
    """`model` (a SentenceTransformer or a CrossEncoder), if its tokenizer turns a probe sentence into known tokens;
    a folder without tokenizer files loads a tokenizer with no vocabulary, which reads every word as [UNK] and scores
    nonsense without a word of warning."""
    tokenizer = model.tokenizer
    unknown = getattr(tokenizer, "unk_token_id", None)
    if unknown is None:  # byte-level tokenizers have no unknown token: every text is known
        return model
    ids = tokenizer(PROBE_SENTENCE, add_special_tokens=False)["input_ids"]
    if all(token == unknown for token in ids):
        raise UsageError(f"{option} {name}: its tokenizer knows no word of {PROBE_SENTENCE!r} (every token is "
                         f"{tokenizer.unk_token}): the folder lacks its tokenizer files (tokenizer.json, vocab.txt, "
                         "...) or holds another model's; copy in the tokenizer files that came with the weights")
    _check_ids_fit_the_embeddings(model, name, option)
    return model


def _check_ids_fit_the_embeddings(model: Any, name: str, option: str) -> None:
    """The tokenizer's largest id below the size of the model's token embedding table: a larger one (another model's
    tokenizer, a vocabulary grown without resizing the model) fails only mid-encoding, as an IndexError."""
    first = model._first_module() if hasattr(model, "_first_module") else model  # a SentenceTransformer's transformer
    transformer = getattr(first, "auto_model", None) or getattr(first, "model", None)
    embeddings = transformer.get_input_embeddings() if hasattr(transformer, "get_input_embeddings") else None
    rows = getattr(embeddings, "num_embeddings", None)
    largest = max(model.tokenizer.get_vocab().values(), default=-1)
    if rows is not None and largest >= rows:
        raise UsageError(f"{option} {name}: its tokenizer has ids up to {largest}, and the model's token embedding "
                         f"table has {rows} rows: the tokenizer is another model's, or the vocabulary grew without "
                         "resizing the model; give the tokenizer that came with the weights")
