"""Speed on this machine, side by side with plain sentence-transformers. Not part of the test suite.

    python benchmarks/perf.py --model <all-MiniLM-L6-v2 folder> --bert-shape ../shared/models/bert-base-uncased-shape \\
        --data-dir ../shared/data --output-dir runs/perf [--device cuda]
    python scripts/make_tables.py --add runs/perf          # -> results/perf.md and its plot

In one run, for each model (all-MiniLM-L6-v2; with --bert-shape, bert-base-uncased's shape with random weights, whose
cost is the real model's):
- the hardware ceiling: fp32 and bf16 (on a GPU also fp16) matrix-multiply GFLOP/s on this device;
- encoding STSb test sentences and SciFact documents: plain `SentenceTransformer.encode` against this project's
  encode path at fp32, without length sorting (batches in the data's order, i.e. no "smart batching"), with bf16
  weights, and with int8 dynamic quantization (CPU) or fp16 weights (GPU): sentences/s, the encoder's useful
  GFLOP/s (its FLOPs on the real tokens, padding excluded) as a share of the fp32 ceiling, and, for
  all-MiniLM-L6-v2, the STSb test Spearman each gives;
- training: steady-state steps/s and samples/s, and the training's wall time, of the sentence-transformers example
  recipe (SentenceTransformerTrainer + CosineSimilarityLoss, random batches; fp32, and on a GPU fp16 and bf16 too)
  against this project's trainer at fp32 / bf16 (GPU: fp16 too), random / length-grouped batches, same model, seed,
  batch size and sequence length, STSb train. The recipe runs before and after ours (a drifting machine shows as a
  gap between its two runs); each variant runs in a fresh process, with its peak resident and (GPU) peak GPU
  memory; after whole epochs each is scored on STSb validation by the same EmbeddingSimilarityEvaluator.
--device cpu (the default) samples the data and caps the steps for 2 cores, as the committed CPU numbers were
measured; --device cuda takes every sentence and document and the paper's 4 epochs of STSb train, and waits for the
GPU (torch.cuda.synchronize) before each clock reading. The whole reproduction's wall time is a normal run of
scripts/finetune.py; results/perf.md reads its record.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from perf_device import (
    ALL,
    BERT_TRAIN_VARIANTS,
    DEVICE_DEFAULTS,
    encode_variants,
    is_cuda,
    matmul_settings,
    peak_gpu_memory,
    reset_peak_memory,
    synchronize,
    train_variants,
    use_tf32,
    with_device_defaults,
)
from perf_train import SKIPPED_STEPS, TrainRun, train_side_by_side
from sentence_transformers import SentenceTransformer

from sbert_repro.config.hardware import resolve_device
from sbert_repro.data.corpus import document_text
from sbert_repro.data.loaders import load_retrieval, load_sts
from sbert_repro.errors import UsageError
from sbert_repro.evaluation.scoring import sts_scores
from sbert_repro.model.encoder import build_model, encode, random_weight_model
from sbert_repro.model.precision import for_inference
from sbert_repro.runs.environment import environment
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.records import PERF_KIND, PLAIN_ENCODE, create_run_dir, write_record

BATCH_SIZE = 64  # encoding, for every variant


def matmul_gflops(dtype: torch.dtype, device: str, seconds: float = 3.0) -> float:
    """The best of repeated size x size matrix products, in GFLOP/s (2 n^3 FLOPs each); a GPU needs larger ones
    than a CPU to run at its peak."""
    size = 8192 if is_cuda(device) else 2048
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    torch.mm(a, b)  # warm-up
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        best = max(best, 2 * size ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def matmul_peaks(device: str) -> dict[str, float]:
    """The ceilings the encoder's speed is held against; fp16 on a GPU only (a CPU has no fast fp16 kernels)."""
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, **({"fp16": torch.float16} if is_cuda(device) else {})}
    return {name: matmul_gflops(dtype, device) for name, dtype in dtypes.items()}


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
    """{"<name> (<size> of <all>)": a random sample in the data's order}, or all of them (size ALL) under `name`."""
    if size == ALL or size >= len(texts):
        return {name: texts}
    return {f"{name} ({size:,} of {len(texts):,})": [texts[i] for i in sorted(rng.choice(len(texts), size, False))]}


def encode_side_by_side(model_path: str, device: str, data: dict[str, list[str]], stsb: Any, peak_gflops: float,
                        spearman: bool) -> list[dict[str, Any]]:
    """Each encode variant on each data set; sentences/s, useful GFLOP/s, share of the fp32 ceiling. A variant's
    weights (a bf16 copy, say) are made before it runs and let go after, so that a GPU peak holds one copy."""
    plain = SentenceTransformer(model_path, device=device)
    ours = build_model(model_path, "mean", device)
    ours.max_seq_length = plain.max_seq_length  # the same length for both: the model's own
    costs = {name: encoder_gflop(ours, texts) for name, texts in data.items()}
    points = []
    for name, (precision, sorted_batches) in {PLAIN_ENCODE: ("fp32", True), **encode_variants(device)}.items():
        model = plain if name == PLAIN_ENCODE else for_inference(ours, precision)
        encode_texts = (partial(plain.encode, batch_size=BATCH_SIZE) if name == PLAIN_ENCODE
                        else partial(sorted_encode if sorted_batches else unsorted_encode, model))
        for data_name, texts in data.items():
            point, embeddings = timed_encode(encode_texts, device, texts, costs[data_name], peak_gflops)
            point = {"data": data_name, "variant": name, "dtype": precision, "max_seq_length": ours.max_seq_length,
                     **point}
            if spearman and data_name == "stsb test":
                point["stsb_spearman"] = sts_scores(np.asarray(embeddings, dtype=np.float32), texts, stsb)["spearman"]
            points.append(point)
            logging.info("%s / %s: %.1f sentences/s", data_name, name, point["sentences_per_s"])
        del model, encode_texts  # before the next variant's copy is made
    return points


def timed_encode(encode_texts: Callable[[list[str]], Any], device: str, texts: list[str], cost: tuple[int, float],
                 peak_gflops: float) -> tuple[dict[str, Any], Any]:
    """One encode, after a warm-up batch (thread pools, kernels and allocations are set up on first use)."""
    tokens, gflop = cost
    encode_texts(texts[:BATCH_SIZE])
    reset_peak_memory(device)
    synchronize(device)
    start = time.perf_counter()
    embeddings = encode_texts(texts)
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"sentences": len(texts), "tokens": tokens, "seconds": seconds, "sentences_per_s": len(texts) / seconds,
            "gflops": gflop / seconds, "share_of_fp32_peak": gflop / seconds / peak_gflops,
            **peak_gpu_memory(device)}, embeddings


def sorted_encode(model: SentenceTransformer, texts: list[str]) -> np.ndarray:
    """This project's encode path (evaluate.encode): sentence-transformers sorts by length before batching."""
    return encode(model, texts, BATCH_SIZE)[0]


def unsorted_encode(model: SentenceTransformer, texts: list[str]) -> np.ndarray:
    """Batches in the data's order (no length sorting across batches): what smart batching saves."""
    return np.vstack([model.encode(texts[start:start + BATCH_SIZE], batch_size=BATCH_SIZE, normalize_embeddings=True,
                                   convert_to_numpy=True) for start in range(0, len(texts), BATCH_SIZE)])


# Options that cut the work for a CPU: what they count, and what 0 takes.
COUNTS = {"--train-steps": ("training steps per variant, at most", "the whole epochs"),
          "--scifact-docs": ("SciFact documents encoded (a random sample)", "every one"),
          "--bert-sentences": ("STSb test sentences, bert shape (a random sample)", "every one"),
          "--bert-scifact-docs": ("SciFact documents, bert shape (a random sample)", "every one"),
          "--bert-train-steps": ("training steps per variant, bert shape, at most", "the whole epochs")}


def by_device(option: str) -> str:
    cpu, cuda = DEVICE_DEFAULTS["cpu"][option], DEVICE_DEFAULTS["cuda"][option]
    return f"default: {cpu} on cpu, {cuda} on cuda"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="all-MiniLM-L6-v2's folder")
    parser.add_argument("--bert-shape", type=Path, default=None,
                        help="bert-base-uncased's config and tokenizer without weights (../shared/models/...); "
                             "left out, only --model is measured")
    parser.add_argument("--data-dir", type=Path, required=True, help="local task copies (../shared/data)")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--epochs", type=int, default=None, help=f"training epochs per variant ({by_device('epochs')})")
    for option, (what, zero) in COUNTS.items():
        parser.add_argument(option, type=int, default=None,
                            help=f"{what}; 0: {zero} ({by_device(option.removeprefix('--').replace('-', '_'))})")
    parser.add_argument("--tf32", action="store_true",
                        help="fp32 matrix multiplies in TF32 (GPU, Ampere and later), for the recipe and ours alike")
    parser.add_argument("--compile", action="store_true", help="torch.compile this project's model for training")
    parser.add_argument("--seed", type=int, default=0, help="the data samples' seed")
    return parser


def test_data(args: argparse.Namespace) -> tuple[Any, dict[str, list[str]], dict[str, list[str]]]:
    """STSb test, and the texts each model encodes: all-MiniLM-L6-v2 every STSb test sentence (its Spearman needs
    them all), the bert shape samples where the options ask for them."""
    stsb = load_sts("stsb", "test", args.data_dir)
    scifact = load_retrieval("scifact", args.data_dir)
    sentences = list(dict.fromkeys(stsb.sentences1 + stsb.sentences2))
    documents = [document_text(doc["title"], doc["text"]) for doc in scifact.corpus.values()]
    rng = np.random.default_rng(args.seed)
    minilm = {"stsb test": sentences, **sample_of(rng, "scifact corpus", documents, args.scifact_docs)}
    bert = {**sample_of(rng, "stsb test", sentences, args.bert_sentences),
            **sample_of(rng, "scifact corpus", documents, args.bert_scifact_docs)}
    return stsb, minilm, bert


def measure_models(args: argparse.Namespace, peaks: dict[str, float]) -> list[dict[str, Any]]:
    """Encoding and training, model by model."""
    stsb, minilm_data, bert_data = test_data(args)
    run = TrainRun(args.model, args.data_dir, args.device, args.epochs, args.train_steps, args.tf32, args.compile)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        models = {model_label(args.model): (args.model, minilm_data, run, train_variants(args.device))}
        if args.bert_shape is not None:
            bert_shape = str(random_weight_model(args.bert_shape, Path(scratch) / "bert-base-uncased-random"))
            models["bert-base-uncased shape, random weights"] = (
                bert_shape, bert_data, replace(run, model_path=bert_shape, steps=args.bert_train_steps),
                BERT_TRAIN_VARIANTS)
        for label, (path, data, model_run, variants) in models.items():
            # Spearman only where the weights are real and every STSb test sentence was encoded.
            results.append({"model": label, "encode": encode_side_by_side(path, args.device, data, stsb, peaks["fp32"],
                                                                          spearman=path == args.model),
                            "train": train_side_by_side(model_run, variants)})
    return results


def perf_record(args: argparse.Namespace, run_environment: dict[str, Any], peaks: dict[str, float],
                results: list[dict[str, Any]], wall_seconds: float) -> dict[str, Any]:
    """The benchmark's record (runs/schema.py's PerfRecord): its options as resolved for the device, what it ran on
    and how fp32 computed there, and each model's points."""
    config = {**vars(args), "data_dir": str(args.data_dir), "output_dir": str(args.output_dir),
              "bert_shape": None if args.bert_shape is None else str(args.bert_shape),
              "encode_batch_size": BATCH_SIZE, "skipped_steps": SKIPPED_STEPS, "argv": sys.argv[1:]}
    return {"kind": PERF_KIND, "config": config, "environment": run_environment,
            "torch_threads": torch.get_num_threads(), "matmul_settings": matmul_settings(), "matmul_gflops": peaks,
            "models": results, "wall_seconds": wall_seconds}


def main() -> int:
    parser = build_parser()
    args = parser.parse_args()
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    try:
        args.device = resolve_device(args.device)
    except UsageError as error:
        parser.error(str(error))
    args = with_device_defaults(args)
    use_tf32(args.tf32)
    run_environment = environment(args.device)
    run_dir = create_run_dir(args.output_dir)
    started = time.perf_counter()
    peaks = matmul_peaks(args.device)
    logging.info("matmul peak: %s GFLOP/s", {name: round(value) for name, value in peaks.items()})
    results = measure_models(args, peaks)
    write_record(run_dir / "record.json", perf_record(args, run_environment, peaks, results,
                                                      time.perf_counter() - started))
    print(f"wrote {run_dir / 'record.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
