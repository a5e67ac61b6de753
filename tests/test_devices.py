"""The device and number format on GPUs this machine does not have, with torch's CUDA queries mocked: --precision
auto is bf16 only where the GPU computes it natively (compute capability 8.0 or higher), fp16 mixed precision on
older CUDA GPUs (T4, V100), and the record says which and why; under torchrun each process takes its own GPU,
cuda:LOCAL_RANK, from the first model call."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from sbert_repro.config.encoding import EvaluateConfig
from sbert_repro.config.hardware import choose_precision, resolve_device, resolved, resolved_with_reason
from sbert_repro.config.training import TrainConfig
from sbert_repro.errors import UsageError
from sbert_repro.model import encoder
from sbert_repro.model.encoder import build_model, encode
from sbert_repro.model.precision import for_inference
from sbert_repro.pipeline.evaluate_run import evaluate
from sbert_repro.runs.environment import environment
from sbert_repro.train.trainer import training_arguments


@pytest.fixture
def gpus(monkeypatch):
    """`count` CUDA GPUs of compute capability `capability`, as torch would report them; the GPU each process made
    its current one is recorded in the returned list. torch.cuda.is_bf16_supported() says True, as it does by
    default on a T4 (it counts emulation)."""
    current: list[int] = []

    def install(capability: tuple[int, int], count: int = 1) -> list[int]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: f"GPU {capability[0]}.{capability[1]}")
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
        monkeypatch.setattr(torch.cuda, "set_device", set_device)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: current[-1] if current else 0)
        return current

    def set_device(device: int | str | torch.device) -> None:
        index = device if isinstance(device, int) else torch.device(device).index
        if index is None:  # as torch refuses it
            raise ValueError(f"Expected a torch.device with a specified index or an integer, but got:{device}")
        current.append(index)

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return install


@pytest.mark.parametrize("capability, expected, why", [
    ((7, 5), "fp16", "--precision auto: CUDA compute capability 7.5 only emulates bf16 (native from 8.0); fp16 mixed "
                     "precision instead"),  # T4, RTX 20xx
    ((7, 0), "fp16", "--precision auto: CUDA compute capability 7.0 only emulates bf16"),  # V100
    ((8, 0), "bf16", "--precision auto: CUDA compute capability 8.0 computes bf16 natively"),  # A100
    ((9, 0), "bf16", "--precision auto: CUDA compute capability 9.0 computes bf16 natively"),  # H100
])
def test_auto_precision_is_bf16_only_where_the_gpu_computes_it_natively(gpus, capability, expected, why):
    gpus(capability)
    precision, reason = choose_precision("auto", "cuda")
    assert precision == expected and reason.startswith(why)
    config, reason = resolved_with_reason(EvaluateConfig(device="auto"))
    assert (config.device, config.precision) == ("cuda", expected) and reason.startswith(why)


def test_a_given_precision_is_kept_and_says_so(gpus):
    gpus((7, 5))
    assert choose_precision("bf16", "cuda") == ("bf16", "--precision bf16, as given")
    assert choose_precision("fp16", "cuda") == ("fp16", "--precision fp16, as given")
    assert choose_precision("auto", "cpu") == ("fp32", "--precision auto: cpu has no native bf16")


def test_fp16_trains_with_the_trainers_loss_scaling(tmp_path):
    arguments = training_arguments(TrainConfig(precision="fp16", device="cpu"), tmp_path, epochs=1)
    assert arguments.fp16 and not arguments.bf16
    assert not training_arguments(TrainConfig(precision="bf16", device="cpu"), tmp_path, epochs=1).fp16


def test_fp16_encodes_a_copy_close_to_fp32(tiny_model_dir):
    model = build_model(str(tiny_model_dir), "mean", "cpu")
    sentences = [f"the {word} is here" for word in ("cat", "dog", "pizza", "rain")]
    reference, _ = encode(model, sentences, batch_size=4)
    fp16 = for_inference(model, "fp16")
    assert fp16[0] is model[0]  # autocast over the same fp32 weights, not an fp16 copy
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())
    embeddings, _ = encode(fp16, sentences, batch_size=4)
    assert embeddings.dtype == np.float32 and (embeddings * reference).sum(axis=1).min() > 0.98


def test_the_record_names_the_precision_and_why(tiny_model_dir, tiny_data_dir, tmp_path):
    record = evaluate(EvaluateConfig(model=str(tiny_model_dir), data_dir=tiny_data_dir, sts_tasks=("stsb",),
                                     retrieval_tasks=(), output_dir=tmp_path / "out"))
    written = json.loads((tmp_path / "out/record.json").read_text())
    assert written["config"]["precision"] == record["config"]["precision"] == "fp32"
    assert written["environment"]["hardware"]["precision_reason"] == "--precision auto: cpu has no native bf16"


def test_the_record_names_the_gpu_and_its_capability(gpus):
    gpus((7, 5), count=2)
    hardware = environment("cuda:1", "why")["hardware"]
    assert hardware["gpu"] == "GPU 7.5" and hardware["gpu_capability"] == "7.5"
    assert hardware["precision_reason"] == "why" and hardware["gpus_visible"] == 2


@pytest.mark.parametrize("device, gpu", [("cuda:1", 1), ("cuda", 0)])
def test_outside_torchrun_the_trainer_uses_the_one_gpu_the_run_names(gpus, tmp_path, caplog, device, gpu):
    from sentence_transformers import SentenceTransformerTrainingArguments

    from sbert_repro.train.trainer import OneDevice

    current = gpus((9, 0), count=2)
    with caplog.at_level(logging.WARNING, logger="sentence_transformers"):
        args = training_arguments(TrainConfig(device=device, precision="fp32"), tmp_path, epochs=1)
    # transformers alone would take cuda:0 and wrap the model in nn.DataParallel over both GPUs (n_gpu 2), which
    # doubles the paper's batch of 16
    assert args.n_gpu == 1 and str(args.device) == f"cuda:{gpu}" and current[-1] == gpu
    assert args.train_batch_size == 16
    assert not [r for r in caplog.records if "DataParallel" in r.getMessage()]
    # the Trainer builds default arguments for its model card, which make GPU 0 current (accelerate then puts the
    # model and batches on the current GPU); the built Trainer makes the run's GPU current again
    SentenceTransformerTrainingArguments(output_dir="unused", accelerator_config={"use_configured_state": True})
    assert current[-1] == 0
    OneDevice.make_current(args)
    assert current[-1] == gpu

def test_under_torchrun_each_process_takes_its_own_gpu(gpus, monkeypatch):
    current = gpus((8, 0), count=4)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert resolve_device("auto") == "cuda:3" and current == [3]
    assert resolve_device("cuda") == "cuda:3"
    assert resolve_device("cuda:0") == "cuda:0"  # a GPU named outright is the one given
    assert resolve_device("cpu") == "cpu"  # the gloo test runs: no GPU to take
    assert resolved(TrainConfig()).device == "cuda:3"
    with pytest.raises(UsageError, match="--device cuda:4: only 4 CUDA device"):
        resolve_device("cuda:4")


def test_the_first_model_call_under_torchrun_is_on_the_processs_gpu(gpus, monkeypatch, tiny_model_dir):
    current = gpus((8, 0), count=2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    placed, real = [], encoder.SentenceTransformer

    def on_the_cpu(modules, device):
        placed.append(device)
        return real(modules=modules, device="cpu")  # this machine has no GPU to put it on

    monkeypatch.setattr(encoder, "SentenceTransformer", on_the_cpu)
    build_model(str(tiny_model_dir), "mean", "auto")
    assert placed == ["cuda:1"] and current == [1]


def test_more_torchrun_processes_than_gpus_is_one_line(gpus, monkeypatch):
    gpus((8, 0), count=2)
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(UsageError, match="LOCAL_RANK=2, and only 2 CUDA device"):
        resolve_device("auto")


def test_the_cross_encoder_scores_in_the_precision_the_run_resolved(tiny_model_dir):
    from sbert_repro.model.cross_encoder import new_cross_encoder, pair_scorer

    cross = new_cross_encoder(str(tiny_model_dir), "cpu")
    pairs = [("the cat is here", "the dog is here"), ("we like the bus", "we like the bus"), ("rain", "sun")]
    fp32, bf16 = pair_scorer(cross, 2)(pairs), pair_scorer(cross, 2, "bf16")(pairs)
    assert bf16.dtype == np.float32 and not np.array_equal(fp32, bf16) and np.abs(fp32 - bf16).max() < 0.02
    assert {parameter.dtype for parameter in cross.parameters()} == {torch.float32}  # autocast, not a cast
