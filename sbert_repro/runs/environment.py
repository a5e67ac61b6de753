"""What a run was made with, for its record: package versions, the git commit (and whether the tree was clean), the
hardware (CPU model and flags, GPU), and the torchrun process it is."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from sbert_repro.runs.paths import REPO_ROOT

PACKAGES = ("sbert-repro", "torch", "transformers", "sentence-transformers", "datasets", "faiss-cpu",
            "numpy", "scipy", "accelerate", "tokenizers")


def world_size() -> int:
    """Processes training together (torchrun sets WORLD_SIZE); 1 for a plain run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Under torchrun only rank 0 writes run folders, records and models; a plain run is rank 0."""
    return int(os.environ.get("RANK", "0")) == 0


def git_state() -> dict[str, Any]:
    """The commit the code ran from, and whether the work tree had uncommitted changes."""
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


# The CPU features that decide how fast (and in which number format) a CPU run computes: AVX2 fp32 kernels,
# AVX-512, and native bf16 (AVX512-BF16, AMX), which --precision auto uses.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def _cpuinfo(field: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """Which of SPEED_FLAGS this CPU has (empty where /proc/cpuinfo is not there to ask)."""
    flags = set((_cpuinfo("flags") or "").split())
    return [flag for flag in SPEED_FLAGS if flag in flags]


def environment(device: str, precision_reason: str | None = None) -> dict[str, Any]:
    """Package versions and the hardware the run used; `precision_reason` (config/hardware.py's choose_precision)
    says why the run computes in the number format its config names."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    hardware: dict[str, Any] = {"device": device, "cpu": _cpu_name(), "cpu_flags": cpu_flags(),
                                "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                "platform": platform.platform(), "processes": world_size()}
    if precision_reason is not None:
        hardware["precision_reason"] = precision_reason
    if device.startswith("cuda"):
        hardware["gpu"] = torch.cuda.get_device_name(device)
        hardware["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        hardware["gpus_visible"] = torch.cuda.device_count()
        hardware["cuda"] = torch.version.cuda
    return {"python": platform.python_version(), "packages": versions, "hardware": hardware, "git": git_state()}
