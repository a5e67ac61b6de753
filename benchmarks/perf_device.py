"""What benchmarks/perf.py runs on each device, and how it reads clocks and memory there.

On a CPU it keeps the sampled, capped measurements of 2 cores (so numbers stay comparable across runs); on a GPU
it runs whole epochs of STSb train and encodes every test sentence and document, and times the plain
sentence-transformers recipe in each number format it supports, before and after ours.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from sbert_repro.runs.records import EXAMPLE_RECIPE

ALL = 0  # a count of 0 takes everything: every sentence or document, every step of the epochs

# Defaults by device. CPU: 2 cores' worth of samples and steps; GPU: the paper's 4 epochs on all of STSb train.
DEVICE_DEFAULTS: dict[str, dict[str, int]] = {
    "cpu": {"epochs": 1, "train_steps": 100, "bert_train_steps": 25, "scifact_docs": 512, "bert_sentences": 1024,
            "bert_scifact_docs": 128},
    "cuda": {"epochs": 4, "train_steps": ALL, "bert_train_steps": ALL, "scifact_docs": ALL, "bert_sentences": ALL,
             "bert_scifact_docs": ALL},
}

# The sentence-transformers example recipe in each number format -> its dtype. Its training_stsbenchmark.py
# trains with fp16=True on a GPU; a CPU has no fast fp16, and the recipe's fp32 is the comparison there.
RECIPE_DTYPES = {EXAMPLE_RECIPE: "fp32", f"{EXAMPLE_RECIPE} fp16": "fp16", f"{EXAMPLE_RECIPE} bf16": "bf16"}
# Encoding variants beside PLAIN_ENCODE: the name in the table -> (precision, length-sorted batches).
ENCODE_VARIANTS = {"ours fp32": ("fp32", True), "ours fp32, unsorted batches": ("fp32", False),
                   "ours fp16": ("fp16", True), "ours bf16": ("bf16", True), "ours int8": ("int8", True)}
# This project's training variants -> (precision, length-grouped batches).
TRAIN_VARIANTS = {"ours fp32, random batches": ("fp32", False), "ours fp32, length-grouped": ("fp32", True),
                  "ours bf16, random batches": ("bf16", False), "ours bf16, length-grouped": ("bf16", True),
                  "ours fp16, length-grouped": ("fp16", True)}
CPU_TRAIN_VARIANTS = ("ours fp32, random batches", "ours fp32, length-grouped", "ours bf16, random batches",
                      "ours bf16, length-grouped")
GPU_TRAIN_VARIANTS = (*CPU_TRAIN_VARIANTS, "ours fp16, length-grouped")
# bert-base's shape costs 5x all-MiniLM-L6-v2: ours as the paper (fp32, random batches) and with both speed-ups.
BERT_TRAIN_VARIANTS = ("ours fp32, random batches", "ours bf16, length-grouped")


def is_cuda(device: str) -> bool:
    return torch.device(device).type == "cuda"


def with_device_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """`args` with each option left out (None) set to its device's default (DEVICE_DEFAULTS)."""
    defaults = DEVICE_DEFAULTS["cuda" if is_cuda(args.device) else "cpu"]
    return argparse.Namespace(**{**vars(args), **{name: value for name, value in defaults.items()
                                                  if getattr(args, name) is None}})


def encode_variants(device: str) -> dict[str, tuple[str, bool]]:
    """The encode variants `device` runs: fp16 only on a GPU (a CPU has no fast fp16 kernels), int8 only on a CPU
    (torch's dynamic quantization has CPU kernels alone)."""
    left_out = "ours int8" if is_cuda(device) else "ours fp16"
    return {name: spec for name, spec in ENCODE_VARIANTS.items() if name != left_out}


def recipe_variants(device: str) -> tuple[str, ...]:
    return tuple(RECIPE_DTYPES) if is_cuda(device) else (EXAMPLE_RECIPE,)


def train_variants(device: str) -> tuple[str, ...]:
    return GPU_TRAIN_VARIANTS if is_cuda(device) else CPU_TRAIN_VARIANTS


def train_order(device: str, ours: tuple[str, ...]) -> list[tuple[str, int]]:
    """(variant, repeat) in the order they run: the recipe, ours, then the recipe again (repeat 1), so that a
    machine that speeds up or slows down during the benchmark shows as a gap between the recipe's two runs."""
    recipes = recipe_variants(device)
    return [*((name, 0) for name in recipes), *((name, 0) for name in ours), *((name, 1) for name in recipes)]


def variant_dtype(variant: str) -> str:
    return RECIPE_DTYPES[variant] if variant in RECIPE_DTYPES else TRAIN_VARIANTS[variant][0]


def synchronize(device: str) -> None:
    """Wait for the kernels queued on a GPU, so that a clock read next counts them (CUDA runs asynchronously);
    a CPU computes before it returns."""
    if is_cuda(device):
        torch.cuda.synchronize(device)


def reset_peak_memory(device: str) -> None:
    """Start peak GPU memory afresh: the cache of what earlier work freed is released first, so that the reserved
    peak is the next measurement's own."""
    if is_cuda(device):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gpu_memory(device: str) -> dict[str, float]:
    """torch's peak allocated (tensors) and reserved (its caching allocator's hold) GPU memory since the last
    reset_peak_memory, in MiB; nothing on a CPU."""
    if not is_cuda(device):
        return {}
    return {"peak_gpu_allocated_mib": torch.cuda.max_memory_allocated(device) / 2 ** 20,
            "peak_gpu_reserved_mib": torch.cuda.max_memory_reserved(device) / 2 ** 20}


def peak_resident_mib() -> float:
    """This process's peak resident memory (VmHWM; Linux). Not getrusage's ru_maxrss: Linux carries that over from
    the parent through fork and exec, so a spawned child would report the parent's peak."""
    status = Path("/proc/self/status").read_text(encoding="utf-8")
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return kib / 1024


def use_tf32(enabled: bool) -> None:
    """TF32 for fp32 matrix multiplies (Ampere and later), or torch's default, full fp32."""
    torch.set_float32_matmul_precision("high" if enabled else "highest")


def matmul_settings() -> dict[str, Any]:
    """How this process computes fp32 matrix multiplies and convolutions: in TF32 or in full fp32."""
    return {"float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
            "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32)}


def child_device(device: str) -> str:
    """The device a training process names: its only visible GPU (child_environment), or the CPU."""
    return "cuda" if is_cuda(device) else "cpu"


def child_environment(device: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a training process starts with: on CUDA, only `device`'s GPU visible. The Trainer trains
    on cuda:0 whatever the model was put on, and spreads a batch over every GPU it sees (DataParallel)."""
    if not is_cuda(device):
        return {}
    index = torch.device(device).index or 0
    visible = [gpu for gpu in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if gpu.strip()]
    return {"CUDA_VISIBLE_DEVICES": visible[index] if visible else str(index)}


@contextmanager
def environment_set(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `values` while the block runs (for the processes it starts), as it was after."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
