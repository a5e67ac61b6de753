"""Scale-out: torchrun DistributedDataParallel on CPU (gloo), and the Docker image run with no network.

The container test builds the project's own Dockerfile, so it takes minutes: it runs where
SBERT_REPRO_CONTAINER=1 says a container engine is usable (.ci/run sets it after `container.sh setup`
succeeds) and is skipped, saying so, everywhere else.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from sbert_repro.cli.main import main
from sbert_repro.errors import UsageError

TORCHRUN_ARGS = ["--epochs", "8", "--batch-size", "8", "--lr", "3e-3", "--sts-tasks", "stsb",
                 "--retrieval-tasks", "none", "--device", "cpu"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_with_gloo_match_a_single_process_run(tiny_model_dir, tiny_data_dir, tmp_path):
    single = tmp_path / "single"
    assert main(["finetune", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir),
                 "--output-dir", str(single), *TORCHRUN_ARGS]) == 0
    ddp = tmp_path / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                f"--master_port={free_port()}", str(REPO_ROOT / "scripts" / "finetune.py")]
    result = subprocess.run([*torchrun, "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir),
                             "--output-dir", str(ddp), *TORCHRUN_ARGS], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    # rank 0 alone wrote the run: one record, one model, one table printed
    assert sorted(p.name for p in ddp.iterdir()) == ["gains.md", "model", "record.json"]
    assert result.stdout.count("| stsb | spearman |") == 1
    record = json.loads((ddp / "record.json").read_text())
    single_record = json.loads((single / "record.json").read_text())
    assert record["environment"]["hardware"]["processes"] == 2
    # --batch-size is the global batch: 2 processes x 4 pairs take the single process's 8, step for step
    assert record["training"]["steps"] == single_record["training"]["steps"] == 8 * 12
    ddp_score = record["finetuned"]["scores"]["stsb/spearman"]
    single_score = single_record["finetuned"]["scores"]["stsb/spearman"]
    assert ddp_score - record["baseline"]["scores"]["stsb/spearman"] > 10  # it learned
    assert abs(ddp_score - single_score) < 5, (ddp_score, single_score)  # the same within noise


def test_the_global_batch_must_split_over_the_processes(monkeypatch):
    from sbert_repro.train.trainer import per_process_batch_size

    assert per_process_batch_size(16) == 16
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(UsageError, match="--batch-size 16 does not split evenly over 3 processes"):
        per_process_batch_size(16)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert per_process_batch_size(16) == 8


# ----------------------------------------------------------------------------- Docker

def container_command() -> list[str]:
    if os.environ.get("SBERT_REPRO_CONTAINER") != "1":
        pytest.skip("container test not enabled: set SBERT_REPRO_CONTAINER=1 where podman or docker works "
                    "(.ci/run does after `../shared/tools/container.sh setup` succeeds)")
    script = REPO_ROOT.parent / "shared" / "tools" / "container.sh"
    if script.is_file():
        return ["bash", str(script)]
    if shutil.which("docker"):
        return ["docker"]
    pytest.skip("SBERT_REPRO_CONTAINER=1 but neither ../shared/tools/container.sh nor docker is here")


@pytest.mark.container
def test_docker_image_runs_the_tiny_finetune_offline(tiny_model_dir, tiny_data_dir, tmp_path):
    engine = container_command()
    image = "sbert-repro-test"
    build_args = shlex.split(os.environ.get("SBERT_REPRO_CONTAINER_BUILD_ARGS", ""))
    started = time.perf_counter()
    build = subprocess.run([*engine, "build", "-t", image, *build_args, str(REPO_ROOT)],
                           capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-3000:]
    build_seconds = time.perf_counter() - started

    # The image runs as an unprivileged user: it gets readable copies of the inputs and a writable output.
    data_dir = shutil.copytree(tiny_data_dir, tmp_path / "data")
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    for folder in (tmp_path, data_dir, model_dir):
        for path in [folder, *Path(folder).rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    started = time.perf_counter()
    run = subprocess.run([*engine, "run", "--rm", "--network=none", "-e", "HF_HUB_OFFLINE=1",
                          "-v", f"{data_dir}:/data:ro", "-v", f"{model_dir}:/models/tiny:ro",
                          "-v", f"{out}:/out", image, "--data-dir", "/data", "--model", "/models/tiny",
                          "--output-dir", "/out/run", "--epochs", "2", "--batch-size", "8",
                          "--sts-tasks", "stsb,sickr", "--retrieval-tasks", "scifact,stsb-retrieval"],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    print(f"container build {build_seconds:.0f}s, run {time.perf_counter() - started:.0f}s")
    record = json.loads((out / "run" / "record.json").read_text())
    assert record["status"] == "complete"
    assert record["config"]["data_dir"] == "/data" and record["config"]["model"] == "/models/tiny"
    assert set(record["finetuned"]["scores"]) >= {"stsb/spearman", "sickr/spearman", "scifact/ndcg@10",
                                                  "stsb-retrieval/ndcg@10"}
    assert (out / "run" / "model" / "model.safetensors").is_file()
    assert "| stsb | spearman |" in run.stdout
