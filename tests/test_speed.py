"""The speed options: length-grouped training batches, --precision (bf16, int8), and results/perf.md."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from conftest import with_environment
from datasets import Dataset

from sbert_repro.cli.main import main
from sbert_repro.config.hardware import resolve_precision
from sbert_repro.config.training import TrainConfig
from sbert_repro.data import tasks
from sbert_repro.errors import UsageError
from sbert_repro.model.encoder import build_model, encode
from sbert_repro.model.precision import for_inference
from sbert_repro.report import perf_page as perf
from sbert_repro.report import results_page as results
from sbert_repro.runs import records
from sbert_repro.runs.schema import FinetuneRecord, PerfRecord
from sbert_repro.train.batching import LengthGroupedBatchSampler
from sbert_repro.train.trainer import training_arguments


def text_pairs(count: int, seed: int = 0) -> Dataset:
    rng = random.Random(seed)
    words = lambda: " ".join("w" * rng.randint(1, 6) for _ in range(rng.choice([2, 3, 5, 40])))  # noqa: E731
    return Dataset.from_dict({"sentence1": [words() for _ in range(count)],
                              "sentence2": [words() for _ in range(count)],
                              "score": [rng.random() for _ in range(count)]})


def padded_characters(batches: list[list[int]], lengths: list[int]) -> int:
    """What a batch costs once padded to its longest example."""
    return sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)


def test_length_grouped_batches_cover_every_pair_once_and_pad_far_less_than_random_ones():
    dataset = text_pairs(1000)
    sampler = LengthGroupedBatchSampler(dataset, batch_size=16, drop_last=False, generator=torch.Generator(), seed=3)
    batches = list(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    assert len(batches) == len(sampler) == 63
    lengths = [len(a) + len(b) for a, b in zip(dataset["sentence1"], dataset["sentence2"], strict=True)]
    order = np.random.default_rng(0).permutation(1000).tolist()
    random_batches = [order[start:start + 16] for start in range(0, 1000, 16)]
    assert padded_characters(batches, lengths) < 0.6 * padded_characters(random_batches, lengths)
    # batches come in random order, not longest to shortest
    maxima = [max(lengths[i] for i in batch) for batch in batches]
    assert maxima != sorted(maxima, reverse=True)


def test_length_grouped_batches_repeat_for_a_seed_and_epoch_and_change_with_the_epoch():
    dataset = text_pairs(200)
    sampler = LengthGroupedBatchSampler(dataset, batch_size=8, drop_last=True, generator=torch.Generator(), seed=1)
    first = list(sampler)
    assert first == list(sampler)
    assert all(len(batch) == 8 for batch in first) and len(first) == len(sampler) == 25
    sampler.set_epoch(1)
    assert list(sampler) != first


def test_training_uses_the_sampler_and_autocast_the_config_asks_for(tmp_path):
    grouped = training_arguments(TrainConfig(precision="bf16", device="cpu"), tmp_path, epochs=1)
    assert grouped.bf16 and grouped.batch_sampler is LengthGroupedBatchSampler
    plain = training_arguments(TrainConfig(precision="fp32", group_by_length=False, device="cpu"), tmp_path, epochs=1)
    assert not plain.bf16 and plain.batch_sampler != LengthGroupedBatchSampler


def test_auto_precision_is_bf16_only_where_the_hardware_has_it(monkeypatch):
    assert resolve_precision("auto", "cpu") == "fp32"  # conftest: a CPU without native bf16
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("auto", "mps") == "fp32"
    with pytest.raises(UsageError, match="int8.*CPU only"):
        resolve_precision("int8", "cuda")


def test_bf16_and_int8_encode_a_copy_close_to_fp32_and_leave_the_model_as_it_was(tiny_model_dir):
    model = build_model(str(tiny_model_dir), "mean", "cpu")
    sentences = [f"the {word} is here" for word in ("cat", "dog", "pizza", "rain", "bus", "sun")]
    reference, _ = encode(model, sentences, batch_size=4)
    bf16, int8 = for_inference(model, "bf16"), for_inference(model, "int8")
    assert for_inference(model, "fp32") is model
    # bf16 computes in autocast over the model's own fp32 weights, shared rather than copied
    assert bf16[0] is model[0] and next(bf16.parameters()).dtype == torch.float32
    features = bf16(bf16.tokenize(sentences))  # computed in bf16 (on a CPU LayerNorm too), handed on in fp32
    assert features["sentence_embedding"].dtype == features["token_embeddings"].dtype == torch.float32
    assert any(type(module).__module__.startswith("torch.ao.nn.quantized") for module in int8.modules())
    assert all(parameter.dtype == torch.float32 for parameter in model.parameters())
    for encoder in (bf16, int8):
        embeddings, _ = encode(encoder, sentences, batch_size=4)
        assert embeddings.dtype == np.float32
        cosines = (embeddings * reference).sum(axis=1)
        assert cosines.min() > 0.98 and not np.array_equal(embeddings, reference)


def test_evaluate_records_the_precision_it_ran_in(tiny_model_dir, tiny_data_dir, tmp_path):
    runs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert main(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir",
                     str(out), "--sts-tasks", "stsb", "--retrieval-tasks", "none", "--precision", precision]) == 0
        runs[precision] = json.loads((out / "record.json").read_text())
    assert runs["bf16"]["config"]["precision"] == "bf16"
    # bf16 moves the cosines a little (Pearson sees it; Spearman only where ranks swap), never far.
    assert runs["fp32"]["scores"]["stsb/pearson"] != runs["bf16"]["scores"]["stsb/pearson"]
    for metric in ("stsb/spearman", "stsb/pearson"):
        assert abs(runs["fp32"]["scores"][metric] - runs["bf16"]["scores"][metric]) < 5


def test_finetune_refuses_int8_before_writing_anything(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["finetune", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir",
                 str(out), "--precision", "int8"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert len(err.splitlines()) == 1 and "--precision int8" in err and "encoding only" in err


def test_int8_with_several_encoding_processes_is_refused_before_reading_the_corpus(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "index"
    code = main(["index", "--model", str(tiny_model_dir), "--corpus", str(tmp_path / "corpus.jsonl"), "--output-dir",
                 str(out), "--precision", "int8", "--processes", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert len(err.splitlines()) == 1 and "--precision int8 with --processes 2" in err


# ----------------------------------------------------------------------------- results/perf.md

def perf_record() -> PerfRecord:
    def encode_point(variant: str, per_s: float, spearman: float | None) -> dict:
        point = {"data": "stsb test", "variant": variant, "sentences": 100, "seconds": 100 / per_s,
                 "sentences_per_s": per_s, "gflops": per_s, "share_of_fp32_peak": per_s / 1000}
        return point if spearman is None else {**point, "stsb_spearman": spearman}

    def train_point(variant: str, samples_per_s: float) -> dict:
        return {"variant": variant, "batch_size": 16, "max_seq_length": 128, "steps_per_s": samples_per_s / 16,
                "samples_per_s": samples_per_s, "peak_rss_mib": 2048.0}

    return records.typed(with_environment({
        "kind": records.PERF_KIND, "wall_seconds": 600.0, "torch_threads": 2,
        "config": {"model": "org/m", "output_dir": "runs/perf", "encode_batch_size": 64},
        "matmul_gflops": {"fp32": 1000.0, "bf16": 2500.0},
        "models": [{"model": "org/m",
                    "encode": [encode_point(records.PLAIN_ENCODE, 200.0, 80.0), encode_point("ours bf16", 500.0, 79.8)],
                    "train": [train_point(records.EXAMPLE_RECIPE, 40.0), train_point("ours bf16", 60.0)]}]})).at("perf")


def reproduction(seed: int, total_minutes: float, **config: object) -> FinetuneRecord:
    return records.typed(with_environment({
        "kind": "finetune",
        "config": {"model": "org/m", "objective": "sts-cosine", "epochs": 4, "max_train_samples": None,
                   "sts_tasks": list(tasks.TABLE1_STS_TASKS), "retrieval_tasks": list(tasks.DEFAULT_RETRIEVAL_TASKS),
                   "seed": seed, **config},
        "baseline": {"scores": {"stsb/spearman": 70.0}}, "finetuned": {"scores": {"stsb/spearman": 85.0}},
        "timings": {"baseline_eval_s": 60.0, "train_s": 120.0, "finetuned_eval_s": 60.0,
                    "total_s": 60 * total_minutes}})).at(f"run/seed-{seed}")


def test_perf_page_gives_each_ratio_against_plain_sentence_transformers(tmp_path):
    fast = reproduction(1, 12.0, precision="bf16", group_by_length=True)
    slow = reproduction(2, 22.0)
    partial = reproduction(3, 5.0, max_train_samples=64)
    matryoshka = reproduction(4, 5.0, matryoshka_dims=[384, 128])
    finetunes = [r for r in (fast, slow, partial, matryoshka, perf_record()) if perf.is_full_reproduction(r)]
    assert finetunes == [fast, slow]
    page = perf.render_perf([perf_record()], finetunes, plots_dir=tmp_path)
    assert "| org/m | stsb test | ours bf16 | 500.0 | 2.50x | 500 | 50% | 79.80 | -0.20 |" in page
    assert "| org/m | ours bf16 | 3.75 | 60.0 | 1.50x | 2,048 MiB |" in page
    assert "**1,000 GFLOP/s fp32**" in page
    assert "torch 2.13.0 with 2 threads, sentence-transformers 6.3.0, commit abc" in page
    assert "| [run/seed-1](records/run/seed-1/record.json) | org/m | bf16 | length-grouped | 1.0 min | 2.0 min | " \
           "1.0 min | **12.0 min** | 85.00 |" in page
    assert "| fp32 | random | 1.0 min | 2.0 min | 1.0 min | 22.0 min | 85.00 |" in page
    assert (tmp_path / "speedups-perf.png").stat().st_size > 0
    assert results.render_results([perf_record()], plots_dir=None) == results.render_results([], plots_dir=None)


def test_a_run_from_before_the_speed_options_resumes_only_as_it_ran(tmp_path):
    from dataclasses import replace

    from sbert_repro.runs.records import resumable_record

    config = TrainConfig(output_dir=tmp_path, precision="fp32", group_by_length=False)
    older = {key: value for key, value in config.to_dict().items() if key not in ("precision", "group_by_length")}
    (tmp_path / "record.json").write_text(json.dumps(with_environment(
        {"kind": "finetune", "status": "incomplete", "config": older, "baseline": {"scores": {}}})))
    # compared as it ran (fp32 and random batches, filled in for reading), and handed back as it was written
    assert resumable_record(tmp_path, config)["config"] == older
    with pytest.raises(UsageError, match="precision='fp32', not 'bf16'"):
        resumable_record(tmp_path, replace(config, precision="bf16"))
    with pytest.raises(UsageError, match="group_by_length=False, not True"):
        resumable_record(tmp_path, replace(config, group_by_length=True))
