"""Which device and number format a command runs on, resolved once as it starts (`resolved`), so that every stage
after it reads the same answer from its configuration. torch is imported only here, inside the functions: building
and checking a configuration stays instant."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TypeVar

from sbert_repro.errors import UsageError

Config = TypeVar("Config")


def resolve_device(device: str) -> str:
    """'auto' -> cuda when visible, else cpu; a named accelerator that is absent is a UsageError. Under torchrun
    (LOCAL_RANK set) a bare cuda is this process's own GPU, cuda:LOCAL_RANK, made the current one: otherwise every
    rank builds its model, scores and mines on GPU 0 until the Trainer moves it."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device is visible here; use --device cpu or auto")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) are visible here, "
                         "numbered from 0")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: no Apple GPU is available here; use --device cpu or auto")
    if device == "cuda" and os.environ.get("LOCAL_RANK", "").isdigit():
        rank = int(os.environ["LOCAL_RANK"])
        if rank >= torch.cuda.device_count():
            raise UsageError(f"torchrun process LOCAL_RANK={rank}, and only {torch.cuda.device_count()} CUDA "
                             "device(s) are visible; start at most that many processes per machine")
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
    return device


def choose_precision(precision: str, device: str) -> tuple[str, str]:
    """The number format `precision` resolves to on `device`, and why. 'auto' -> bf16 where `device` computes it
    natively (a CUDA GPU of compute capability 8.0 or higher; a CPU with AVX512-BF16 or AMX); fp16 mixed precision
    on older CUDA GPUs (T4, V100: they only emulate bf16, slowly), as sentence-transformers' examples train there;
    else fp32. int8 (dynamic quantization, fbgemm) only on CPU."""
    import torch

    if precision == "int8" and device != "cpu":
        raise UsageError(f"--precision int8: dynamic int8 quantization runs on the CPU only, not {device}; "
                         "use --precision bf16 there, or --device cpu")
    if precision != "auto":
        return precision, f"--precision {precision}, as given"
    if device.startswith("cuda"):
        # is_bf16_supported() also counts emulation; the capability says what the tensor cores compute.
        major, minor = torch.cuda.get_device_capability(device)
        if (major, minor) >= (8, 0):
            return "bf16", f"--precision auto: CUDA compute capability {major}.{minor} computes bf16 natively"
        return "fp16", (f"--precision auto: CUDA compute capability {major}.{minor} only emulates bf16 (native "
                        "from 8.0); fp16 mixed precision instead")
    if device == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return "bf16", "--precision auto: this CPU computes bf16 natively (AVX512-BF16 or AMX)"
    return "fp32", f"--precision auto: {device} has no native bf16"


def resolve_precision(precision: str, device: str) -> str:
    """The number format `precision` resolves to on `device` (choose_precision's, without the reason)."""
    return choose_precision(precision, device)[0]


def resolved_with_reason(config: Config) -> tuple[Config, str]:
    """`config` (any command's: it has `device` and `precision`) with both resolved for this machine, and why
    that precision (the record keeps it beside the hardware)."""
    device = resolve_device(config.device)  # type: ignore[attr-defined]
    precision, reason = choose_precision(config.precision, device)  # type: ignore[attr-defined]
    return replace(config, device=device, precision=precision), reason  # type: ignore[type-var]


def resolved(config: Config) -> Config:
    """`config` (any command's: it has `device` and `precision`) with both resolved for this machine."""
    return resolved_with_reason(config)[0]
