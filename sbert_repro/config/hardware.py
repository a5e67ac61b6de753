"""Which device and number format a command runs on, resolved once as it starts (`resolved`), so that every stage
after it reads the same answer from its configuration. torch is imported only here, inside the functions: building
and checking a configuration stays instant."""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

from sbert_repro.errors import UsageError

Config = TypeVar("Config")


def resolve_device(device: str) -> str:
    """'auto' -> cuda when visible, else cpu; a named accelerator that is absent is a UsageError."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device is visible here; use --device cpu or auto")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: no Apple GPU is available here; use --device cpu or auto")
    return device


def resolve_precision(precision: str, device: str) -> str:
    """'auto' -> bf16 where `device` computes it natively (a CUDA GPU with bf16; a CPU with AVX512-BF16 or
    AMX), else fp32; int8 (dynamic quantization, fbgemm) only on CPU."""
    import torch

    if precision == "int8" and device != "cpu":
        raise UsageError(f"--precision int8: dynamic int8 quantization runs on the CPU only, not {device}; "
                         "use --precision bf16 there, or --device cpu")
    if precision != "auto":
        return precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return "bf16"
    return "fp32"


def resolved(config: Config) -> Config:
    """`config` (any command's: it has `device` and `precision`) with both resolved for this machine."""
    device = resolve_device(config.device)  # type: ignore[attr-defined]
    return replace(config, device=device, precision=resolve_precision(config.precision, device))  # type: ignore
