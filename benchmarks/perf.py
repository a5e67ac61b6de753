"""Speed on this machine, side by side with plain sentence-transformers. Not part of the test suite.

    python benchmarks/perf.py --model <all-MiniLM-L6-v2 folder> --bert-shape ../shared/models/bert-base-uncased-shape \
        --data-dir ../shared/data --output-dir runs/perf
    python scripts/make_tables.py --add runs/perf          # -> results/perf.md and its plot

In one run, for each model (all-MiniLM-L6-v2; bert-base-uncased's shape with random weights, whose cost is
the real model's):
- the hardware ceiling: fp32 (and bf16) matrix-multiply GFLOP/s on this machine;
- encoding STSb test sentences and SciFact documents (for bert-base's shape, random samples of them: it costs
  5x as much): plain `SentenceTransformer.encode` against this project's encode path at fp32, without
  length sorting (batches in the data's order, i.e. no "smart batching"), with bf16 weights, and with int8
  dynamic quantization: sentences/s, the encoder's useful GFLOP/s (its FLOPs on the real tokens, padding
  excluded) as a share of the fp32 ceiling, and, for all-MiniLM-L6-v2, the STSb test Spearman each gives;
- training: steady-state steps/s and samples/s of the sentence-transformers example recipe
  (SentenceTransformerTrainer + CosineSimilarityLoss, fp32, random batches) against this project's trainer
  at fp32 / bf16, random / length-grouped batches, same model, batch size and sequence length, STSb train;
  and each variant's peak resident memory (each runs in a fresh process).
The whole reproduction's wall time is a normal run of scripts/finetune.py; results/perf.md reads its record.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss
from transformers import TrainerCallback

from sbert_repro.config.training import TrainConfig
from sbert_repro.data.loaders import document_text, load_retrieval, load_sts
from sbert_repro.evaluation.scoring import sts_scores
from sbert_repro.model.encoder import build_model, encode, for_inference, random_weight_model
from sbert_repro.runs.environment import environment
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.records import EXAMPLE_RECIPE, PERF_KIND, PLAIN_ENCODE, create_run_dir, write_record
from sbert_repro.train.losses import pairs_to_dataset
from sbert_repro.train.trainer import CheckedTrainer, training_arguments

BATCH_SIZE = 64  # encoding, for every variant
SKIPPED_STEPS = 5  # training steps not timed: allocation and first-call warm-up

# Encoding variants beside PLAIN_ENCODE: the name in the table -> (precision, length-sorted batches).
ENCODE_VARIANTS = {"ours fp32": ("fp32", True), "ours fp32, unsorted batches": ("fp32", False),
                   "ours bf16": ("bf16", True), "ours int8": ("int8", True)}
# Training variants beside EXAMPLE_RECIPE -> (precision, length-grouped batches).
TRAIN_VARIANTS = {"ours fp32, random batches": ("fp32", False), "ours fp32, length-grouped": ("fp32", True),
                  "ours bf16, random batches": ("bf16", False), "ours bf16, length-grouped": ("bf16", True)}
# bert-base's shape is 5x all-MiniLM-L6-v2's cost: it runs the recipe, ours as the paper (fp32, random
# batches) and ours with both speed-ups, on samples of the data and fewer steps (about 15 minutes on 2 cores).
BERT_TRAIN_VARIANTS = ("ours fp32, random batches", "ours bf16, length-grouped")


def matmul_gflops(dtype: torch.dtype, size: int = 2048, seconds: float = 3.0) -> float:
    """The best of repeated size x size matrix products, in GFLOP/s (2 n^3 FLOPs each)."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    torch.mm(a, b)  # warm-up
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * size ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def encoder_gflop(model: SentenceTransformer, texts: list[str]) -> tuple[int, float]:
    """Tokens, and the encoder's forward FLOPs (x1e-9) on them, padding excluded: per layer and sequence of n
    tokens, 8nh^2 (Q, K, V, output projections) + 4nhf (feed-forward) + 4n^2h (attention scores and mix)."""
    config = model[0].auto_model.config
    h, f, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    lengths = np.array([len(ids) for ids in model.tokenizer(texts, truncation=True,
                                                            max_length=model.max_seq_length)["input_ids"]])
    flops = layers * (8 * lengths * h * h + 4 * lengths * h * f + 4 * lengths ** 2 * h).sum()
    return int(lengths.sum()), float(flops) / 1e9


def sample_of(rng: np.random.Generator, name: str, texts: list[str], size: int) -> dict[str, list[str]]:
    """{"<name> (<size> of <all>)": a random sample in the data's order}, or all of them under `name`."""
    if size >= len(texts):
        return {name: texts}
    return {f"{name} ({size:,} of {len(texts):,})": [texts[i] for i in sorted(rng.choice(len(texts), size, False))]}


def encode_side_by_side(model_path: str, data: dict[str, list[str]], stsb: Any, peak_gflops: float,
                        spearman: bool) -> list[dict[str, Any]]:
    """Each encode variant on each data set; sentences/s, useful GFLOP/s, share of the fp32 ceiling."""
    plain = SentenceTransformer(model_path, device="cpu")
    ours = build_model(model_path, "mean", "cpu")
    ours.max_seq_length = plain.max_seq_length  # the same length for both: the model's own
    encoders = {PLAIN_ENCODE: partial(plain.encode, batch_size=BATCH_SIZE)}
    for name, (precision, sorted_batches) in ENCODE_VARIANTS.items():
        encoders[name] = partial(sorted_encode if sorted_batches else unsorted_encode, for_inference(ours, precision))
    points = []
    for data_name, texts in data.items():
        tokens, gflop = encoder_gflop(ours, texts)
        for name, encode_texts in encoders.items():
            encode_texts(texts[:BATCH_SIZE])  # warm-up: thread pools and kernels are set up on first use
            start = time.perf_counter()
            embeddings = encode_texts(texts)
            seconds = time.perf_counter() - start
            point = {"data": data_name, "variant": name, "sentences": len(texts), "tokens": tokens,
                     "max_seq_length": ours.max_seq_length, "seconds": seconds,
                     "sentences_per_s": len(texts) / seconds, "gflops": gflop / seconds,
                     "share_of_fp32_peak": gflop / seconds / peak_gflops}
            if spearman and data_name == "stsb test":
                point["stsb_spearman"] = sts_scores(np.asarray(embeddings, dtype=np.float32), texts, stsb)["spearman"]
            points.append(point)
            logging.info("%s / %s: %.1f sentences/s", data_name, name, point["sentences_per_s"])
    return points


def sorted_encode(model: SentenceTransformer, texts: list[str]) -> np.ndarray:
    """This project's encode path (evaluate.encode): sentence-transformers sorts by length before batching."""
    return encode(model, texts, BATCH_SIZE)[0]


def unsorted_encode(model: SentenceTransformer, texts: list[str]) -> np.ndarray:
    """Batches in the data's order (no length sorting across batches): what smart batching saves."""
    return np.vstack([model.encode(texts[start:start + BATCH_SIZE], batch_size=BATCH_SIZE, normalize_embeddings=True,
                                   convert_to_numpy=True) for start in range(0, len(texts), BATCH_SIZE)])


class StepClock(TrainerCallback):
    """When each optimizer step ended; steady-state speed is the mean gap after the warm-up steps."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.ends.append(time.perf_counter())


def train_one(model_path: str, variant: str, data_dir: Path, steps: int, config: TrainConfig) -> dict[str, Any]:
    """One training variant in this (fresh) process: steady-state steps/s, samples/s, peak memory."""
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    transformers.set_seed(config.seed)
    train = pairs_to_dataset(load_sts("stsb", "train", data_dir))
    clock, output = StepClock(), tempfile.mkdtemp(prefix="perf-train-")
    if variant == EXAMPLE_RECIPE:  # sentence-transformers' training_stsbenchmark.py, cut to the essentials
        model = SentenceTransformer(model_path, device="cpu")
        model.max_seq_length = config.max_seq_length
        args = SentenceTransformerTrainingArguments(
            output_dir=output, num_train_epochs=1, per_device_train_batch_size=config.batch_size,
            learning_rate=config.lr, warmup_steps=config.warmup_ratio, use_cpu=True, seed=config.seed,
            save_strategy="no", report_to="none", disable_tqdm=True)
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train,
                                             loss=CosineSimilarityLoss(model), callbacks=[clock])
    else:
        precision, grouped = TRAIN_VARIANTS[variant]
        ours = replace(config, precision=precision, group_by_length=grouped, device="cpu")
        model = build_model(model_path, "mean", "cpu")
        model.max_seq_length = ours.max_seq_length
        args = training_arguments(ours, Path(output), epochs=1)
        args.eval_strategy, args.save_strategy, args.load_best_model_at_end = "no", "no", False
        args.disable_tqdm = True
        trainer = CheckedTrainer(model=model, args=args, train_dataset=train, loss=CosineSimilarityLoss(model),
                                 callbacks=[clock])
    trainer.args.max_steps = steps
    trainer.train()
    shutil.rmtree(output, ignore_errors=True)
    gaps = np.diff(clock.ends[SKIPPED_STEPS:])
    steps_per_s = 1 / float(gaps.mean())
    return {"variant": variant, "timed_steps": len(gaps), "batch_size": config.batch_size,
            "max_seq_length": config.max_seq_length, "steps_per_s": steps_per_s,
            "samples_per_s": steps_per_s * config.batch_size,
            "peak_rss_mib": peak_resident_mib()}


def peak_resident_mib() -> float:
    """This process's peak resident memory (VmHWM; Linux). Not getrusage's ru_maxrss: Linux carries that over from
    the parent through fork and exec, so a spawned child would report the parent's peak."""
    status = Path("/proc/self/status").read_text(encoding="utf-8")
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return kib / 1024


def train_side_by_side(model_path: str, data_dir: Path, steps: int, variants: Any) -> list[dict[str, Any]]:
    """Each training variant in a process of its own, so each peak memory is its own."""
    points = []
    for variant in [EXAMPLE_RECIPE, *variants]:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            point = pool.submit(train_one, model_path, variant, data_dir, steps, TrainConfig()).result()
        logging.info("train / %s: %.2f steps/s, %.0f MiB", variant, point["steps_per_s"], point["peak_rss_mib"])
        points.append(point)
    return points


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="all-MiniLM-L6-v2's folder")
    parser.add_argument("--bert-shape", type=Path, required=True,
                        help="bert-base-uncased's config and tokenizer without weights (../shared/models/...)")
    parser.add_argument("--data-dir", type=Path, required=True, help="local task copies (../shared/data)")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--scifact-docs", type=int, default=512, help="SciFact documents encoded (random sample)")
    parser.add_argument("--train-steps", type=int, default=100, help="training steps per variant, all-MiniLM-L6-v2")
    parser.add_argument("--bert-sentences", type=int, default=1024, help="STSb test sentences, bert shape (sample)")
    parser.add_argument("--bert-scifact-docs", type=int, default=128, help="SciFact documents, bert shape (sample)")
    parser.add_argument("--bert-train-steps", type=int, default=25, help="training steps per variant, bert shape")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    run_environment = environment("cpu")
    run_dir = create_run_dir(args.output_dir)
    started = time.perf_counter()

    stsb = load_sts("stsb", "test", args.data_dir)
    scifact = load_retrieval("scifact", args.data_dir)
    sentences = list(dict.fromkeys(stsb.sentences1 + stsb.sentences2))
    documents = [document_text(doc["title"], doc["text"]) for doc in scifact.corpus.values()]
    rng = np.random.default_rng(args.seed)
    minilm_data = {"stsb test": sentences, **sample_of(rng, "scifact corpus", documents, args.scifact_docs)}
    bert_data = {**sample_of(rng, "stsb test", sentences, args.bert_sentences),
                 **sample_of(rng, "scifact corpus", documents, args.bert_scifact_docs)}
    peaks = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    logging.info("matmul peak: %s GFLOP/s", {name: round(value) for name, value in peaks.items()})

    with tempfile.TemporaryDirectory() as scratch:
        bert_shape = str(random_weight_model(args.bert_shape, Path(scratch) / "bert-base-uncased-random"))
        models = {model_label(args.model): (args.model, minilm_data, args.train_steps, TRAIN_VARIANTS),
                  "bert-base-uncased shape, random weights": (bert_shape, bert_data, args.bert_train_steps,
                                                              BERT_TRAIN_VARIANTS)}
        results = []
        for label, (path, data, steps, variants) in models.items():
            # Spearman only where the weights are real and every STSb test sentence was encoded.
            results.append({"model": label,
                            "encode": encode_side_by_side(path, data, stsb, peaks["fp32"], spearman=path == args.model),
                            "train": train_side_by_side(path, args.data_dir, steps, variants)})

    record = {"kind": PERF_KIND, "config": {**vars(args), "data_dir": str(args.data_dir),
                                            "output_dir": str(args.output_dir), "bert_shape": str(args.bert_shape),
                                            "encode_batch_size": BATCH_SIZE, "skipped_steps": SKIPPED_STEPS,
                                            "argv": sys.argv[1:]},
              "environment": run_environment, "torch_threads": torch.get_num_threads(),
              "matmul_gflops": peaks, "models": results, "wall_seconds": time.perf_counter() - started}
    write_record(run_dir / "record.json", record)
    print(f"wrote {run_dir / 'record.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
