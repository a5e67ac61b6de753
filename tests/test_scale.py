"""Scale-out: torchrun DistributedDataParallel on CPU (gloo), and the Docker image run with no network.

The container test builds the project's own Dockerfile, so it takes minutes: it runs where
SBERT_REPRO_CONTAINER=1 says a container engine is usable (.ci/run sets it after `container.sh setup`
succeeds) and is skipped, saying so, everywhere else.
"""

from __future__ import annotations

import json
import os
import pickle
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
from sbert_repro.config.training import TrainConfig
from sbert_repro.errors import UsageError
from sbert_repro.pipeline import finetune_run
from sbert_repro.pipeline.finetune_data import FinetuneData
from sbert_repro.runs import distributed

TORCHRUN_ARGS = ["--epochs", "8", "--batch-size", "8", "--lr", "3e-3", "--sts-tasks", "stsb",
                 "--retrieval-tasks", "none", "--device", "cpu"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Loaded by every torchrun process (PYTHONPATH): each appends a line to ENCODE_LOG.<rank> per encode call, saying
# whether the Trainer was training (validation encodes on every rank) or not (the baseline and the re-score).
ENCODE_COUNTER = """
import os
if "RANK" in os.environ and "ENCODE_LOG" in os.environ:
    import transformers
    from sentence_transformers import SentenceTransformer
    log, training = f"{os.environ['ENCODE_LOG']}.{os.environ['RANK']}", []
    encode, train = SentenceTransformer.encode, transformers.Trainer.train

    def counted_encode(self, *args, **kwargs):
        with open(log, "a") as file:
            file.write("training\\n" if training else "outside training\\n")
        return encode(self, *args, **kwargs)

    def flagged_train(self, *args, **kwargs):
        training.append(True)
        try:
            return train(self, *args, **kwargs)
        finally:
            training.pop()

    SentenceTransformer.encode, transformers.Trainer.train = counted_encode, flagged_train
"""


def test_two_processes_with_gloo_match_a_single_process_run(tiny_model_dir, tiny_data_dir, tmp_path):
    single = tmp_path / "single"
    assert main(["finetune", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir),
                 "--output-dir", str(single), *TORCHRUN_ARGS]) == 0
    ddp = tmp_path / "ddp"
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(ENCODE_COUNTER)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                f"--master_port={free_port()}", str(REPO_ROOT / "scripts" / "finetune.py")]
    result = subprocess.run([*torchrun, "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir),
                             "--output-dir", str(ddp), *TORCHRUN_ARGS], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                                              "PYTHONPATH": os.pathsep.join(filter(None, [
                                                  str(tmp_path / "site"), os.environ.get("PYTHONPATH")])),
                                              "ENCODE_LOG": str(tmp_path / "encodes")})
    assert result.returncode == 0, result.stderr[-3000:]
    # rank 0 alone wrote the run: one record, one model, one table printed
    assert sorted(p.name for p in ddp.iterdir()) == ["gains.md", "model", "mteb-format", "record.json"]
    assert result.stdout.count("| stsb | spearman |") == 1
    # rank 0 alone scored the baseline and the fine-tuned model; rank 1 encoded only in training (validation)
    encodes = {rank: (tmp_path / f"encodes.{rank}").read_text().splitlines() for rank in (0, 1)}
    assert encodes[0].count("outside training") >= 2 and "outside training" not in encodes[1]
    assert "training" in encodes[1]
    record = json.loads((ddp / "record.json").read_text())
    single_record = json.loads((single / "record.json").read_text())
    assert record["environment"]["hardware"]["processes"] == 2
    # --batch-size is the global batch: 2 processes x 4 pairs take the single process's 8, step for step
    assert record["training"]["steps"] == single_record["training"]["steps"] == 8 * 12
    ddp_score = record["finetuned"]["scores"]["stsb/spearman"]
    single_score = single_record["finetuned"]["scores"]["stsb/spearman"]
    assert ddp_score - record["baseline"]["scores"]["stsb/spearman"] > 10  # it learned
    assert abs(ddp_score - single_score) < 5, (ddp_score, single_score)  # the same within noise


@pytest.fixture
def second_process(monkeypatch):
    """This process as torchrun's rank 1, with the main process's broadcast replaced: rank 1 receives `handed[0]`
    (rank 0's result); what each broadcast sent is kept in `sent`."""
    handed: list[object] = [None]
    sent: list[object] = []

    def broadcast(objects, src, group=None):
        assert src == 0
        sent.append(pickle.loads(objects[0]) if objects[0] is not None else None)
        objects[0] = pickle.dumps(handed[0])

    monkeypatch.setattr(distributed.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.distributed, "broadcast_object_list", broadcast)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    return handed, sent


def test_rank_1_mines_nothing_and_trains_on_the_negatives_rank_0_mined(second_process, monkeypatch):
    handed, _ = second_process
    mined = {"train_sets": {"retrieval": "pairs with rank 0's negatives"}, "hard_negatives": {"per_pair": 1}}
    handed[0] = mined
    monkeypatch.setattr(finetune_run, "mine_hard_negatives", lambda *args: pytest.fail("rank 1 mined"))
    data = FinetuneData(train_sets={"retrieval": "pairs"}, validation=None, sts_sets={}, retrieval_sets={})
    config = TrainConfig(objective="retrieval", hard_negatives=1, batch_size=8)
    previous = {0: {"baseline": {"scores": {"stsb/spearman": 50.0}}}}  # read back: no baseline to score
    baseline, data = finetune_run._baseline(config, data, None, previous, {}, None)
    assert data.train_sets == mined["train_sets"] and data.hard_negatives == mined["hard_negatives"]


def test_when_rank_0_fails_its_once_only_work_the_others_stop_in_one_line(second_process, monkeypatch):
    handed, sent = second_process
    handed[0] = distributed.MainProcessFailed("scoring the baseline")
    with pytest.raises(UsageError, match="the main process stopped while scoring the baseline"):
        distributed.on_main_process(lambda: pytest.fail("rank 1 did the work"), "scoring the baseline")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ZeroDivisionError):
        distributed.on_main_process(lambda: 1 / 0, "re-scoring")
    assert isinstance(sent[-1], distributed.MainProcessFailed)  # rank 0 told the others before it stopped


def test_the_global_batch_must_split_over_the_processes(monkeypatch):
    from sbert_repro.train.trainer import per_process_batch_size

    assert per_process_batch_size(16) == 16
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(UsageError, match="--batch-size 16 does not split evenly over 3 processes"):
        per_process_batch_size(16)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert per_process_batch_size(16) == 8


# The first step's loss of an in-batch-negative loss on one global batch of 8 pairs, in this process (a plain run)
# or, under torchrun, as the processes together compute it (each holding 8 / N pairs; DDP averages their losses'
# gradients, so their mean is the loss trained on).
RANKING_LOSS_DRIVER = """
import json, os, sys
import torch, torch.distributed as distributed
from sentence_transformers import SentenceTransformer
from sbert_repro.config.training import TrainConfig
from sbert_repro.train.losses import ranking_loss, with_matryoshka

model_dir, out = sys.argv[1], sys.argv[2]
world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
if world > 1:
    distributed.init_process_group("gloo")
anchors = ["a cat sat on the mat", "the dog runs", "rain falls today", "we like the bus", "a man plays guitar",
           "the sun is hot", "birds fly south", "she reads a book"]
positives = ["the cat is on the mat", "a dog is running", "it rains today", "the bus is liked", "a guitar is played",
             "it is hot in the sun", "the birds go south", "a book is read by her"]
model = SentenceTransformer(model_dir, device="cpu").eval()  # no dropout: every process computes the same vectors
share = slice(rank * len(anchors) // world, (rank + 1) * len(anchors) // world)
losses = {}
for name, config in {"mnrl": TrainConfig(objective="retrieval"),
                     "cached": TrainConfig(objective="retrieval", mini_batch_size=2),
                     "matryoshka": TrainConfig(objective="retrieval", matryoshka_dims=(32, 16))}.items():
    loss = with_matryoshka(model, ranking_loss(model, config), "retrieval", config.matryoshka_dims)
    value = loss([model.tokenize(anchors[share]), model.tokenize(positives[share])], None).detach()
    if world > 1:
        distributed.all_reduce(value)
        value /= world
    losses[name] = value.item()
if rank == 0:
    with open(out, "w") as file:
        json.dump(losses, file)
if world > 1:  # gloo's threads joined before the interpreter exits (else a teardown race may abort the process)
    distributed.barrier()
    distributed.destroy_process_group()
"""


def test_in_batch_negatives_under_torchrun_are_the_whole_batchs(tiny_model_dir, tmp_path):
    driver = tmp_path / "ranking_loss.py"
    driver.write_text(RANKING_LOSS_DRIVER)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, str(driver), str(tiny_model_dir), str(tmp_path / "single.json")],
                            capture_output=True, text=True, timeout=120, env=env)
    assert single.returncode == 0, single.stderr[-3000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]  # a free port
    ddp = subprocess.run([*torchrun, str(driver), str(tiny_model_dir), str(tmp_path / "ddp.json")],
                         capture_output=True, text=True, timeout=180, env=env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single_losses = json.loads((tmp_path / "single.json").read_text())
    ddp_losses = json.loads((tmp_path / "ddp.json").read_text())
    # without gathering, each anchor would see 4 candidates instead of 8: a lower loss
    for name in ("mnrl", "cached", "matryoshka"):
        assert abs(ddp_losses[name] - single_losses[name]) < 1e-5, (name, ddp_losses, single_losses)


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


# Stands in for nvidia/cuda's ubuntu24.04 images: no python3 (the Dockerfile installs it with apt) and uid 1000
# already taken, by `ubuntu`. container.sh makes localhost/debian:bookworm, as no registry is reachable there.
CUDA_BASE_STAND_IN = """FROM {debian}
RUN useradd --create-home --uid 1000 ubuntu
"""

# Run in the image as its own user, with no -v: the user's uid, HF_HOME, how many mounts /cache is (the image's
# declared volume: 1) and whether HF_HOME is writable.
USER_AND_CACHE_PROBE = 'id -u; echo "$HF_HOME"; awk \'$5 == "/cache"\' /proc/self/mountinfo | wc -l; ' \
                       'touch "$HF_HOME/probe" && echo writable'


@pytest.mark.container
def test_docker_image_runs_the_tiny_finetune_offline(tiny_model_dir, tiny_data_dir, tmp_path):
    engine = container_command()
    image, base = "sbert-repro-test", "localhost/sbert-repro-test-cuda-base"
    debian = "localhost/debian:bookworm" if engine[0] == "bash" else "debian:bookworm"
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "Dockerfile").write_text(CUDA_BASE_STAND_IN.format(debian=debian))
    build_args = shlex.split(os.environ.get("SBERT_REPRO_CONTAINER_BUILD_ARGS", ""))
    started = time.perf_counter()
    for arguments in (["-t", base, str(tmp_path / "base")],
                      ["-t", image, "--build-arg", f"BASE_IMAGE={base}", *build_args, str(REPO_ROOT)]):
        build = subprocess.run([*engine, "build", *arguments], capture_output=True, text=True, timeout=1800)
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
                          "-v", f"{out}:/out", image, "finetune", "--data-dir", "/data", "--model", "/models/tiny",
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

    probe = subprocess.run([*engine, "run", "--rm", "--network=none", "--entrypoint", "sh", image,
                            "-c", USER_AND_CACHE_PROBE], capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.split() == ["1000", "/cache/huggingface", "1", "writable"], probe.stdout


def dockerfile_arguments(instruction: str) -> list[str]:
    """What follows `instruction` on each of the Dockerfile's lines that start with it."""
    lines = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
    return [line.split(None, 1)[1] for line in lines if line.split(None, 1)[:1] == [instruction]]


def test_the_image_runs_the_console_script_and_by_default_lists_its_commands(capsys):
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    [entrypoint] = [json.loads(argument) for argument in dockerfile_arguments("ENTRYPOINT")]
    [default] = [json.loads(argument) for argument in dockerfile_arguments("CMD")]
    assert len(entrypoint) == 1 and scripts.get(entrypoint[0]) == "sbert_repro.cli.main:main", entrypoint
    with pytest.raises(SystemExit) as exit_status:
        main(default)
    assert exit_status.value.code == 0
    assert "evaluate" in capsys.readouterr().out


def test_constraints_pin_every_dependency_but_torch_within_pyprojects_ranges():
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            pin = Requirement(line)
            specifiers = list(pin.specifier)
            assert [s.operator for s in specifiers] == ["=="] and not (pin.extras or pin.marker or pin.url), line
            pins[canonicalize_name(pin.name)] = specifiers[0].version
    # torch is pinned per CUDA line by the Dockerfile's TORCH_SPEC instead; the project is what is installed.
    assert "torch" not in pins and "sbert-repro" not in pins
    [torch_spec] = [argument.split("=", 1)[1] for argument in dockerfile_arguments("ARG")
                    if argument.startswith("TORCH_SPEC=")]
    torch_pins = list(Requirement(torch_spec).specifier)
    assert [pin.operator for pin in torch_pins] == ["=="], f"TORCH_SPEC={torch_spec} pins no one torch version"
    torch_pin = torch_pins[0]
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for text in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        version = torch_pin.version if name == "torch" else pins.get(name)
        assert version is not None, f"{name} is not in constraints.txt: regenerate it as its header says"
        assert requirement.specifier.contains(version, prereleases=True), (text, version)
