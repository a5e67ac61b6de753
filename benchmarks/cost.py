"""The paper's cost claim, measured on this machine (Reimers & Gurevych 2019, section 1): the most similar pair among n
sentences by a cross-encoder (n(n-1)/2 forward passes) and by a bi-encoder (n encodes + exact FAISS search). Not part
of the test suite.

    python benchmarks/cost.py --model <all-MiniLM-L6-v2 folder> --bert-shape ../shared/models/bert-base-uncased-shape \
        --data-dir ../shared/data --output-dir runs/cost [--cross-encoder runs/ce/model]
    python scripts/make_tables.py --add runs/cost          # -> results/perf.md's cost section and its plot

For each model (--model; bert-base-uncased's shape with random weights, whose cost is the real model's), on a seeded
sample of STSb test sentences for each --sizes n (--bert-sizes for the bert shape): (1) the cross-encoder route, the
model's encoder under a new one-output head scoring every pair once (i < j); (2) the bi-encoder route, the model's
mean-pooled vectors and an IndexFlatIP search of every vector against all, two deep to skip itself; whether both found
the same pair; and both extrapolated to --target sentences from the largest n's measured rates (marked
"extrapolated"). Whether the routes agree only means something for a trained pair: give --cross-encoder (a trained
one, e.g. `finetune --objective cross-encoder`'s model/) to time and compare it against --model; without it the cross-
encoder's head is random and only its time counts.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import faiss
import torch

from sbert_repro.analysis import pair_cost as cost
from sbert_repro.data.loaders import load_sts
from sbert_repro.model.cross_encoder import load_cross_encoder, new_cross_encoder, pair_scorer
from sbert_repro.model.encoder import build_model, random_weight_model
from sbert_repro.runs.environment import environment
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.records import COST_KIND, create_run_dir, write_record


def encoder_of(model_path: str, batch_size: int) -> cost.Encoder:
    """The bi-encoder route's model: the encoder with mean pooling (build_model), L2-normalised vectors."""
    model = build_model(model_path, "mean", "cpu")
    return lambda sentences: model.encode(sentences, batch_size=batch_size, normalize_embeddings=True,
                                          convert_to_numpy=True)


def run_model(label: str, bi_path: str, cross_path: str | None, sentences: list[str], sizes: list[int],
              args: argparse.Namespace) -> dict:
    """Both routes at every size for one model; the largest size extrapolated to --target."""
    torch.manual_seed(0)  # a new head: drawn the same in every run
    cross = (load_cross_encoder(cross_path, "cpu", option="--cross-encoder") if cross_path
             else new_cross_encoder(bi_path, "cpu"))
    score_pairs, encode = pair_scorer(cross, args.batch_size), encoder_of(bi_path, args.batch_size)
    score_pairs([("warm", "up")])  # thread pools and kernels are set up on first use
    encode(["warm up"])
    points = []
    for n in sizes:
        point = cost.measure(cost.sample(sentences, n, args.seed), score_pairs, encode)
        logging.info("%s, n=%d: cross-encoder %.1fs, bi-encoder %.2fs, agree: %s", label, n,
                     point["cross_encoder"]["seconds"], point["bi_encoder"]["seconds"], point["agree"])
        points.append(point)
    return {"model": label, "cross_encoder": model_label(cross_path) if cross_path else "new head (random)",
            "agreement_meaningful": cross_path is not None, "cross_encoder_max_length": cross.max_seq_length,
            "points": points, "extrapolation": cost.extrapolate(points[-1], args.target)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="the bi-encoder (all-MiniLM-L6-v2's folder)")
    parser.add_argument("--cross-encoder", default=None, help="a trained cross-encoder to compare with --model "
                        "(default: --model's encoder under a random head, timing only)")
    parser.add_argument("--bert-shape", type=Path, default=None, help="bert-base-uncased's config and tokenizer "
                        "without weights (../shared/models/...): also time its shape with random weights")
    parser.add_argument("--data-dir", type=Path, required=True, help="local task copies (../shared/data)")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--sizes", default="200,500,1000", help="sentence counts n (default: %(default)s)")
    parser.add_argument("--bert-sizes", default="100,200", help="sentence counts for --bert-shape, whose cross-encoder "
                        "is about ten times slower (default: %(default)s)")
    parser.add_argument("--target", type=int, default=10_000, help="n extrapolated to (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="pairs or sentences per batch (default: 64)")
    parser.add_argument("--seed", type=int, default=0, help="of the sentence samples (default: %(default)s)")
    args = parser.parse_args()
    for option in ("sizes", "bert_sizes"):
        setattr(args, option, sorted(int(size) for size in getattr(args, option).split(",")))
        if getattr(args, option)[0] < 2:
            parser.error(f"--{option.replace('_', '-')}: every n must be at least 2 (a pair)")
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    run_environment = environment("cpu")
    run_dir = create_run_dir(args.output_dir)
    started = time.perf_counter()
    stsb = load_sts("stsb", "test", args.data_dir)
    sentences = stsb.sentences1 + stsb.sentences2
    results = [run_model(model_label(args.model), args.model, args.cross_encoder, sentences, args.sizes, args)]
    if args.bert_shape is not None:
        with tempfile.TemporaryDirectory() as scratch:
            shape = str(random_weight_model(args.bert_shape, Path(scratch) / "bert-base-uncased-random"))
            results.append(run_model("bert-base-uncased shape, random weights", shape, None, sentences, args.bert_sizes,
                                     args))
    record = {"kind": COST_KIND, "status": "complete",
              "config": {**vars(args), "data_dir": str(args.data_dir), "output_dir": str(args.output_dir),
                         "bert_shape": str(args.bert_shape) if args.bert_shape else None, "argv": sys.argv[1:],
                         "sentences": "STSb test, distinct, seeded sample per n"},
              "environment": run_environment, "torch_threads": torch.get_num_threads(),
              "faiss_threads": faiss.omp_get_max_threads(),
              "models": results, "wall_seconds": time.perf_counter() - started}
    write_record(run_dir / "record.json", record)
    print(f"wrote {run_dir / 'record.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
