"""benchmarks/perf.py on a GPU this machine does not have, with torch's CUDA queries mocked: every clock reading
waits for the GPU, training points carry peak GPU memory, the GPU defaults take whole epochs and all the data, the
example recipe runs in fp32, fp16 and bf16 before and after ours, and a GPU record validates and renders its own
section of results/perf.md. The real training path runs on the CPU only, on the tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import jsonschema
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # the benchmarks are scripts, not a package

import perf  # noqa: E402
import perf_device  # noqa: E402
import perf_train  # noqa: E402

from sbert_repro.report import perf_page  # noqa: E402
from sbert_repro.runs import committed, records, schema  # noqa: E402
from sbert_repro.runs.environment import environment  # noqa: E402
from sbert_repro.runs.record_parts import TrainPoint  # noqa: E402

MIB = 2 ** 20
GPU_NAME = "NVIDIA H100 80GB HBM3"
ARGS = ["--model", "m", "--data-dir", "d", "--output-dir", "o"]


def mock_cuda(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """One H100 as torch would report it; every synchronize and peak-memory reset is recorded in the list returned,
    in order (a test may add the clock readings)."""
    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: GPU_NAME)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("synchronize", device)))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append(("reset", device)))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(("empty cache", None)))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 1536 * MIB)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: 2048 * MIB)
    return calls


@pytest.fixture
def cuda(monkeypatch):
    return mock_cuda(monkeypatch)


@pytest.fixture
def no_cuda(monkeypatch):
    """A CPU machine on which any CUDA call fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a CUDA call on the CPU path")

    for name in ("synchronize", "reset_peak_memory_stats", "max_memory_allocated", "max_memory_reserved",
                 "empty_cache"):
        monkeypatch.setattr(torch.cuda, name, refuse)


def test_the_help_names_the_device_and_the_defaults_each_device_takes():
    result = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "perf.py"), "--device", "cuda", "--help"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "--device DEVICE" in text and "--tf32" in text and "--compile" in text
    assert "(default: 1 on cpu, 4 on cuda)" in text  # --epochs
    assert "0: the whole epochs (default: 100 on cpu, 0 on cuda)" in text  # --train-steps


def test_cuda_without_a_gpu_stops_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["perf.py", *ARGS, "--device", "cuda"])
    with pytest.raises(SystemExit) as stopped:
        perf.main()
    assert stopped.value.code == 2 and "--device cuda: no CUDA device is visible here" in capsys.readouterr().err


def test_the_gpu_defaults_take_whole_epochs_and_all_the_data_and_the_cpu_keeps_its_samples():
    gpu = perf_device.with_device_defaults(perf.build_parser().parse_args([*ARGS, "--device", "cuda"]))
    assert (gpu.epochs, gpu.train_steps, gpu.bert_train_steps) == (4, perf_device.ALL, perf_device.ALL)
    assert (gpu.scifact_docs, gpu.bert_sentences, gpu.bert_scifact_docs) == (perf_device.ALL,) * 3
    cpu = perf_device.with_device_defaults(perf.build_parser().parse_args(ARGS))
    assert (cpu.device, cpu.epochs, cpu.train_steps, cpu.bert_train_steps) == ("cpu", 1, 100, 25)
    assert (cpu.scifact_docs, cpu.bert_sentences, cpu.bert_scifact_docs) == (512, 1024, 128)
    given = perf_device.with_device_defaults(perf.build_parser().parse_args(
        [*ARGS, "--device", "cuda:1", "--epochs", "1", "--train-steps", "50"]))
    assert (given.epochs, given.train_steps, given.scifact_docs) == (1, 50, perf_device.ALL)
    texts = [f"t{i}" for i in range(10)]
    rng = np.random.default_rng(0)
    assert perf.sample_of(rng, "docs", texts, perf_device.ALL) == {"docs": texts}
    assert list(perf.sample_of(rng, "docs", texts, 4)) == ["docs (4 of 10)"]


def test_the_recipe_runs_in_each_dtype_before_and_after_ours_on_a_gpu():
    recipes = [("example recipe", "fp32"), ("example recipe fp16", "fp16"), ("example recipe bf16", "bf16")]
    order = perf_device.train_order("cuda", perf_device.train_variants("cuda"))
    assert order[:3] == [(name, 0) for name, _ in recipes] and order[-3:] == [(name, 1) for name, _ in recipes]
    ours = [variant for variant, _ in order[3:-3]]
    assert "ours fp16, length-grouped" in ours and all(variant.startswith("ours ") for variant in ours)
    assert [perf_device.variant_dtype(name) for name, _ in recipes] == [dtype for _, dtype in recipes]
    assert set(perf_device.encode_variants("cuda")) == {"ours fp32", "ours fp32, unsorted batches", "ours fp16",
                                                       "ours bf16"}


def test_the_cpu_runs_what_its_committed_numbers_measured_and_the_recipe_again_after():
    committed_record = json.loads((REPO_ROOT / "results/records/perf-2cpu-minilm-bertshape/record.json").read_text())
    minilm, bert = committed_record["models"]
    assert list(perf_device.encode_variants("cpu")) == list(dict.fromkeys(
        point["variant"] for point in minilm["encode"]))[1:]  # [0]: plain sentence-transformers
    for model, variants in ((minilm, perf_device.train_variants("cpu")), (bert, perf_device.BERT_TRAIN_VARIANTS)):
        order = perf_device.train_order("cpu", variants)
        assert [point["variant"] for point in model["train"]] == [variant for variant, _ in order[:-1]]
        assert order[-1] == ("example recipe", 1)


def test_synchronize_and_peak_memory_touch_the_gpu_only_on_cuda(cuda):
    perf_device.synchronize("cuda:0")
    perf_device.reset_peak_memory("cuda:0")
    assert perf_device.peak_gpu_memory("cuda:0") == {"peak_gpu_allocated_mib": 1536.0, "peak_gpu_reserved_mib": 2048.0}
    perf_device.synchronize("cpu")
    perf_device.reset_peak_memory("cpu")
    assert perf_device.peak_gpu_memory("cpu") == {}
    assert cuda == [("synchronize", "cuda:0"), ("empty cache", None), ("reset", "cuda:0")]


def test_the_step_clock_waits_for_the_gpu_before_reading_the_time(cuda, monkeypatch):
    monkeypatch.setattr(perf_train, "time", types.SimpleNamespace(
        perf_counter=lambda: cuda.append(("clock", None)) or float(len(cuda))))
    clock = perf_train.StepClock("cuda")
    for _ in range(2):
        clock.on_step_end(None, None, None)
    assert cuda == [("synchronize", "cuda"), ("clock", None)] * 2 and clock.ends == [2.0, 4.0]


def test_the_step_clock_on_a_cpu_reads_the_time_alone(no_cuda):
    clock = perf_train.StepClock("cpu")
    clock.on_step_end(None, None, None)
    assert len(clock.ends) == 1


def test_a_training_process_sees_only_the_gpu_the_benchmark_names(monkeypatch):
    assert perf_device.child_environment("cuda:1", {}) == {"CUDA_VISIBLE_DEVICES": "1"}
    assert perf_device.child_environment("cuda", {}) == {"CUDA_VISIBLE_DEVICES": "0"}
    assert perf_device.child_environment("cuda:1", {"CUDA_VISIBLE_DEVICES": "4,6"}) == {"CUDA_VISIBLE_DEVICES": "6"}
    assert perf_device.child_environment("cpu", {"CUDA_VISIBLE_DEVICES": "4,6"}) == {}
    assert perf_device.child_device("cuda:1") == "cuda" and perf_device.child_device("cpu") == "cpu"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    import os

    with perf_device.environment_set({"CUDA_VISIBLE_DEVICES": "1"}):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


class FakeTrainer:
    """A Trainer whose train() takes `steps` optimizer steps through the callbacks, computing nothing."""

    def __init__(self, clock: perf_train.StepClock, steps: int) -> None:
        self.clock, self.steps = clock, steps
        self.args = types.SimpleNamespace(max_steps=-1)
        self.state = types.SimpleNamespace(global_step=0, epoch=0.0)
        self.model = "the trained model"

    def train(self) -> None:
        for _ in range(self.steps if self.args.max_steps < 0 else self.args.max_steps):
            self.state.global_step += 1
            self.clock.on_step_end(None, None, None)
        self.state.epoch = 4.0


def fake_trainers(monkeypatch, steps: int = 20) -> None:
    def build(run, variant, train, config, output, clock):
        return FakeTrainer(clock, steps)

    monkeypatch.setattr(perf_train, "recipe_trainer", build)
    monkeypatch.setattr(perf_train, "ours_trainer", build)
    monkeypatch.setattr(perf_train, "validation_spearman", lambda model, data_dir, config: 84.5)


def test_a_gpu_training_point_holds_its_peak_gpu_memory_time_and_spearman(cuda, monkeypatch, tiny_data_dir):
    fake_trainers(monkeypatch)
    run = perf_train.TrainRun("m", tiny_data_dir, "cuda:0", epochs=4, steps=perf_device.ALL)
    point = perf_train.train_one(run, "example recipe fp16", 1)
    assert point["peak_gpu_allocated_mib"] == 1536.0 and point["peak_gpu_reserved_mib"] == 2048.0
    assert (point["dtype"], point["repeat"], point["steps"], point["epochs"]) == ("fp16", 1, 20, 4.0)
    assert point["stsb_validation_spearman"] == 84.5 and point["train_seconds"] > 0
    assert point["timed_steps"] == 20 - perf_train.SKIPPED_STEPS - 1 and point["peak_rss_mib"] > 0
    # the peak is reset before training starts, and the clock waits for the GPU at every step and at the end
    assert cuda[:2] == [("empty cache", None), ("reset", "cuda")] and cuda.count(("synchronize", "cuda")) == 20 + 2
    TrainPoint.model_validate(point)


def test_a_cpu_training_point_capped_by_steps_has_no_gpu_fields_and_no_score(no_cuda, monkeypatch, tiny_data_dir):
    fake_trainers(monkeypatch)
    point = perf_train.train_one(perf_train.TrainRun("m", tiny_data_dir, "cpu", epochs=1, steps=10),
                                 "ours bf16, length-grouped", 0)
    assert point["steps"] == 10 and point["dtype"] == "bf16"
    assert not {"peak_gpu_allocated_mib", "peak_gpu_reserved_mib", "stsb_validation_spearman"} & set(point)


def test_the_recipe_and_ours_really_train_on_the_cpu_and_are_scored_alike(tiny_model_dir, tiny_data_dir, no_cuda):
    # 96 pairs, batch 16: 6 steps an epoch; 2 epochs leave steps to time after the warm-up ones
    run = perf_train.TrainRun(str(tiny_model_dir), tiny_data_dir, "cpu", epochs=2, steps=perf_device.ALL)
    for variant in ("example recipe", "ours fp32, length-grouped"):
        point = perf_train.train_one(run, variant, 0)
        assert (point["steps"], point["epochs"]) == (12, 2.0)
        assert -100 <= point["stsb_validation_spearman"] <= 100 and point["steps_per_s"] > 0


def gpu_perf_record(monkeypatch: pytest.MonkeyPatch, tmp_path) -> dict:
    """A GPU benchmark's record as perf.py writes it, from points train_one made on a mocked GPU (CUDA stays mocked
    for the rest of the test), and encode points of the same shape."""
    mock_cuda(monkeypatch)
    fake_trainers(monkeypatch)
    run = perf_train.TrainRun("m", tmp_path / "data", "cuda", epochs=4, steps=perf_device.ALL)
    monkeypatch.setattr(perf_train, "load_sts", lambda task, split, data_dir: None)
    monkeypatch.setattr(perf_train, "pairs_to_dataset", lambda pairs: None)
    train = [perf_train.train_one(run, variant, repeat) for variant, repeat in perf_device.train_order(
        "cuda", ("ours bf16, length-grouped",))]
    for point, samples_per_s in zip(train, (100.0, 150.0, 140.0, 300.0, 110.0, 140.0, 140.0), strict=True):
        point.update(samples_per_s=samples_per_s, steps_per_s=samples_per_s / 16)
    encode = [{"data": "stsb test", "variant": variant, "dtype": dtype, "sentences": 2552, "tokens": 36689,
               "max_seq_length": 256, "seconds": 2552 / per_s, "sentences_per_s": per_s, "gflops": per_s * 10,
               "share_of_fp32_peak": per_s / 50_000, "stsb_spearman": 82.0,
               "peak_gpu_allocated_mib": 300.0, "peak_gpu_reserved_mib": 400.0}
              for variant, dtype, per_s in ((records.PLAIN_ENCODE, "fp32", 5000.0), ("ours bf16", "bf16", 9000.0))]
    args = perf_device.with_device_defaults(perf.build_parser().parse_args([*ARGS, "--device", "cuda", "--tf32"]))
    perf_device.use_tf32(True)
    try:
        record = perf.perf_record(args, environment("cuda"), {"fp32": 50_000.0, "bf16": 700_000.0, "fp16": 700_000.0},
                                  [{"model": "org/minilm", "encode": encode, "train": train}], 300.0)
    finally:
        perf_device.use_tf32(False)
    record["environment"]["git"] = {"commit": "0123456789abcdef", "dirty": False}
    return record


def test_a_gpu_record_validates_and_renders_its_own_section(monkeypatch, tmp_path):
    record = gpu_perf_record(monkeypatch, tmp_path)
    assert record["config"]["device"] == "cuda" and record["matmul_settings"]["cuda_matmul_allow_tf32"] is True
    assert record["environment"]["hardware"]["gpu"] == GPU_NAME
    jsonschema.validate(record, schema.json_schema())
    records.write_record(tmp_path / "records" / "perf-h100" / "record.json", record)  # checks it against the schema
    loaded = committed.load_records(tmp_path / "records")
    page = perf_page.render_perf(loaded, [], plots_dir=None)
    assert f"## On {GPU_NAME} (compute capability 9.0, CUDA 12.8)" in page and "commit 0123456789" in page
    assert "fp32 matrix multiplies in TF32" in page and "No GPU measurement" not in page
    assert "| org/minilm | stsb test | ours bf16 | bf16 | 9,000.0 | 1.80x |" in page
    assert "300 / 400 MiB | 82.00 | +0.00 |" in page
    # vs recipe: over the mean of the recipe's two runs in the same dtype (bf16: 140 and 140)
    assert "| org/minilm | ours bf16, length-grouped | bf16 | 4 | 20 |" in page
    assert "| 300.0 | 2.14x | 1,536 / 2,048 MiB |" in page
    assert "| org/minilm | example recipe fp16 (again, after ours) | fp16 |" in page
    assert "fastest of ours, *ours bf16, length-grouped*, trained 4 epochs in" in page
    assert "at **2.00x** the samples/s of the recipe's fastest run, *example recipe fp16* (" in page  # 300 over 150
    assert "STSb validation Spearman 84.50 against 84.50" in page


def test_without_a_gpu_record_the_page_says_no_gpu_measurement_was_taken():
    cpu_only = committed.load_records(REPO_ROOT / "results" / "records")
    page = perf_page.render_perf([r for r in cpu_only if r.kind == records.PERF_KIND], [], plots_dir=None)
    assert "No GPU measurement has been taken yet" in page and "## On a GPU" in page
    assert "GFLOP/s fp16" not in page  # no GPU section's numbers
