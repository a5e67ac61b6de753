"""The checks every command's configuration shares, each a one-line UsageError naming the option: counts, choices,
split names, the device and number format, index strings, dimension lists and post-processing methods. Pure
functions of their arguments: nothing here loads a model or reads a file."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from itertools import pairwise

from sbert_repro.errors import UsageError

# A config field that does not tell runs apart (where the outputs go, how fast it runs, which tasks are scored, which
# seed) is declared with this metadata; every other field defines the run's setup, so the report never averages runs
# that differ in it as seeds of one setup, and an option added later does so without being listed anywhere.
NOT_SETUP = {"setup": False}


def setup_fields(config_class: type) -> tuple[str, ...]:
    """The fields of a config dataclass that define a run's setup (all but those declared NOT_SETUP), in order."""
    return tuple(field.name for field in dataclasses.fields(config_class) if field.metadata.get("setup", True))


POOLING_MODES = ("mean", "cls", "max")


DEVICES = ("auto", "cpu", "cuda", "mps")


# Number formats. auto: bf16 where the hardware computes it natively, fp16 on older CUDA GPUs, else fp32 (see
# config/hardware.py). Training keeps fp32 weights and runs the forward pass in bf16 or fp16 autocast (fp16 with the
# Trainer's loss scaling); encoding runs on a bf16 or fp16 copy of the weights. int8 (dynamic quantization of the
# Linear layers, CPU) is for encoding only.
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")


EXACT_INDEX = "Flat"  # faiss's exact inner-product search


def positive(option: str, value: int | None) -> None:
    """A count option: a positive integer, or None where None means "not given"."""
    if value is not None and value <= 0:
        raise UsageError(f"{option} must be a positive integer, got {value}")


# numpy's random seeds are unsigned 32-bit integers (transformers.set_seed seeds numpy, Python and torch at once).
MAX_SEED = 2**32 - 1


def check_seed(option: str, value: int) -> None:
    """A random seed numpy accepts: an integer in [0, 2**32 - 1], refused here rather than deep in a run."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise UsageError(f"{option} must be an integer from 0 to {MAX_SEED}, got {value}")


def one_of(option: str, value: str, choices: tuple[str, ...] | dict, what: str) -> None:
    if value not in choices:
        raise UsageError(f"{option}: unknown {what} {value!r}; choose from {', '.join(choices)}")


def split_name(option: str, value: str | None, example: str) -> None:
    """A qrels split name (the file qrels/<split>.tsv), not a path."""
    if value is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", value):
        raise UsageError(f"{option}: {value!r} is not a split name ({example}the qrels file qrels/<split>.tsv)")


def check_device(device: str) -> None:
    """One of DEVICES, or a CUDA GPU by number (cuda:1): what the device resolves to under torchrun."""
    if device not in DEVICES and not re.fullmatch(r"cuda:[0-9]+", device):
        raise UsageError(f"--device: unknown device {device!r}; choose from {', '.join(DEVICES)} "
                         "(pick a GPU with CUDA_VISIBLE_DEVICES)")


def check_encoding(pooling: str, device: str, precision: str) -> None:
    """--pooling, --device and --precision, checked alike for evaluate, finetune, index and geometry."""
    one_of("--pooling", pooling, POOLING_MODES, "mode")
    check_device(device)
    one_of("--precision", precision, PRECISIONS, "format")


def check_index_options(index: str | None, nprobe: int | None, ef_search: int | None) -> None:
    """An index string and search-time knobs that fit it (the string itself is faiss's to judge)."""
    positive("--nprobe", nprobe)
    positive("--ef-search", ef_search)
    if index is not None and not index.strip():
        raise UsageError("--index: empty; give a faiss index_factory string such as Flat, IVF4096,Flat or HNSW32")
    if nprobe is not None and index is not None and "IVF" not in index:
        raise UsageError(f"--nprobe: the index {index!r} has no IVF lists to probe; leave --nprobe out")
    if ef_search is not None and index is not None and "HNSW" not in index:
        raise UsageError(f"--ef-search: the index {index!r} is not an HNSW graph; leave --ef-search out")


def parse_dims(text: str, option: str) -> tuple[int, ...]:
    """'384,256,128' -> (384, 256, 128); an empty list or a part that is not an integer is a UsageError."""
    parts = [part.strip() for part in text.split(",")]
    if not any(parts):
        raise UsageError(f"{option}: {text!r} names no dimension; give a comma-separated list such as 384,256,128,64")
    try:
        return tuple(int(part) for part in parts)
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not a comma-separated list of integers (such as 384,256,128,64)"
                         ) from None


def check_dims(dims: tuple[int, ...], option: str, decreasing: bool) -> None:
    """Positive, distinct and, where `decreasing` (--matryoshka-dims, the order MatryoshkaLoss trains them in),
    strictly decreasing. An empty tuple means the option was left out."""
    if any(dim <= 0 for dim in dims):
        raise UsageError(f"{option}: dimensions must be positive integers, got {','.join(map(str, dims))}")
    if decreasing and any(first <= second for first, second in pairwise(dims)):
        raise UsageError(f"{option}: {','.join(map(str, dims))} is not strictly decreasing; list the dimensions "
                         f"largest first, such as {','.join(map(str, sorted(set(dims), reverse=True)))}")
    if len(set(dims)) != len(dims):
        raise UsageError(f"{option}: {','.join(map(str, dims))} repeats a dimension")


POSTPROCESS_METHODS = ("center", "whiten", "abtt")


POSTPROCESS_FORMS = "center, whiten, whiten-K or abtt-D"


@dataclass(frozen=True)
class Postprocess:
    """A parsed --postprocess option: the method and its K (whiten) or D (abtt); None for center, plain whiten."""
    method: str
    size: int | None = None

    def __str__(self) -> str:
        return self.method if self.size is None else f"{self.method}-{self.size}"


def parse_postprocess(option: str) -> Postprocess:
    """"center", "whiten", "whiten-K" or "abtt-D" -> Postprocess; anything else a one-line UsageError.

    Limits that depend on the vectors (K at most the dimension, D below it) are checked by fit_postprocess.
    """
    match = re.fullmatch(r"([a-z]+)(?:-(.*))?", option, flags=re.DOTALL)
    method, number = (match.group(1), match.group(2)) if match else (option, None)
    if method not in POSTPROCESS_METHODS:
        raise UsageError(f"--postprocess {option!r}: unknown; give {POSTPROCESS_FORMS}")
    letter = {"whiten": "K", "abtt": "D"}.get(method)
    if letter is None:
        if number is not None:
            raise UsageError(f"--postprocess {option!r}: center takes no number; give center")
        return Postprocess(method)
    if number is None:
        if method == "abtt":
            raise UsageError(f"--postprocess {option!r}: abtt needs D, the principal components to remove: abtt-D")
        return Postprocess(method)
    if not re.fullmatch(r"[0-9]+", number) or int(number) < 1:
        raise UsageError(f"--postprocess {option!r}: {letter} must be a positive integer, "
                         f"as in {method}-{256 if method == 'whiten' else 3}")
    return Postprocess(method, int(number))
