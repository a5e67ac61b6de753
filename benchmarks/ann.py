"""Retrieval at scale on this machine: the speed/recall curve of Flat, IVF and HNSW (and IVF-PQ) on 1M
384-d vectors, and exact against approximate nDCG@10 on SciFact. Not part of the test suite.

    python benchmarks/ann.py --model <all-MiniLM-L6-v2 folder> --data-dir ../shared/data --output-dir runs/ann-1m
    python scripts/make_tables.py --add runs/ann-1m          # -> results/ann.md and its plot

The 1M vectors are derived from real embeddings (the model's, of the SciFact corpus): drawn from a mixture of
256 Gaussians fitted to them (k-means centres, sharing the covariance of the points around their centres),
then L2-normalised. That keeps the real embeddings' clusters and their spread around them. `--clusters 1`
draws from one Gaussian with their mean and covariance instead: no clusters at all, the hard case for IVF
and HNSW.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import faiss
import numpy as np
from tqdm.auto import tqdm

from sbert_repro.config.encoding import EvaluateConfig
from sbert_repro.data.corpus import document_text
from sbert_repro.data.loaders import load_retrieval
from sbert_repro.evaluation.scoring import search_and_score
from sbert_repro.model.encoder import build_model, encode
from sbert_repro.runs.environment import environment
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.record_parts import AnnPoint
from sbert_repro.runs.records import ANN_KIND, TARGET_RECALL, best_at_target_recall, create_run_dir, write_record
from sbert_repro.search import faiss_index as index

# index_factory string -> the search-time knob swept, and its values
LARGE_SWEEP = {
    "IVF4096,Flat": ("nprobe", [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]),
    "HNSW32": ("ef_search", [16, 32, 64, 128, 256, 512, 1024]),
    "IVF4096,PQ64": ("nprobe", [4, 16, 64, 256]),
}
# Not swept: OPQ64,IVF4096,PQ64. Building it had not finished after 14 minutes on just 20,000 vectors here
# (2 cores, shared with another run at the time); `--index OPQ64,...` works and is tested, it is not timed.


def small_corpus_sweep(rows: int) -> dict:
    """For SciFact's 5,183 documents: IVF with about sqrt(rows) lists (a power of two: 64 there)."""
    lists = 2 ** round(np.log2(np.sqrt(rows)))
    sweep = {f"IVF{lists},Flat": ("nprobe", [1, 4, 16]), "HNSW32": ("ef_search", [16, 64])}
    if rows >= 256:  # PQ's codebooks have 256 centroids each
        sweep[f"IVF{lists},PQ64"] = ("nprobe", [16])
    return sweep


def derived_vectors(source: np.ndarray, rows: int, seed: int, clusters: int, chunk: int = 100_000) -> np.ndarray:
    """`rows` unit vectors from a Gaussian mixture fitted to `source`: k-means centres (drawn as often as
    their clusters are large) and one covariance shared by all, that of the points around their centres.
    With clusters=1 it is the single Gaussian with `source`'s mean and covariance."""
    rng = np.random.default_rng(seed)
    kmeans = faiss.Kmeans(source.shape[1], clusters, niter=20, seed=seed)
    kmeans.train(np.ascontiguousarray(source, dtype=np.float32))
    assignment = kmeans.index.search(np.ascontiguousarray(source, dtype=np.float32), 1)[1][:, 0]
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(source - kmeans.centroids[assignment], rowvar=False))
    transform = (eigenvectors * np.sqrt(np.clip(eigenvalues, 0, None))).T  # z @ transform ~ N(0, cov)
    weights = np.bincount(assignment, minlength=clusters) / len(source)
    vectors = np.empty((rows, source.shape[1]), dtype=np.float32)
    for start in range(0, rows, chunk):
        size = min(chunk, rows - start)
        block = kmeans.centroids[rng.choice(clusters, size=size, p=weights)] + \
            rng.standard_normal((size, source.shape[1])) @ transform
        vectors[start:start + size] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors


def sweep(corpus: np.ndarray, queries: np.ndarray, settings: dict, train_size: int, seed: int) -> list[dict]:
    """Each index built once, searched at each knob value; recall@10 against exact search, queries/s."""
    _, exact_rows, exact_per_s = index.exact_search(corpus, queries, index.RECALL_DEPTH)
    points = [{"index": index.EXACT, "search_parameters": {}, "build_s": 0.0,
               "bytes_per_vector": corpus.shape[1] * 4.0, "queries_per_s": exact_per_s,
               "exact_queries_per_s": exact_per_s, "recall@10_vs_exact": 1.0}]
    for factory, (knob, values) in settings.items():
        logging.info("building %s over %d vectors", factory, len(corpus))
        built = index.build_and_compare(factory, corpus, queries, exact_rows, exact_per_s, train_size, seed,
                                        tqdm([index.Knobs(**{knob: value}) for value in values], desc=factory))
        points += [{"index": factory, **compared.measured, "build_s": built.build_s,
                    "bytes_per_vector": built.bytes_per_vector} for compared in built.comparisons]
    return points


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", type=Path, default=None, help="local task copies (default: the hub)")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--train-size", type=int, default=100_000)  # the committed sweeps' sample
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clusters", type=int, default=256,
                        help="Gaussians fitted to the real embeddings; 1: a single one (default: %(default)s)")
    args = parser.parse_args()
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", level=logging.INFO)
    run_environment = environment("cpu")
    run_dir = create_run_dir(args.output_dir)
    started = time.perf_counter()

    # SciFact: the real corpus, exact search against approximate, by the task's own metric.
    model = build_model(args.model, "mean", "cpu")
    scifact = load_retrieval("scifact", args.data_dir)
    documents = [document_text(doc["title"], doc["text"]) for doc in scifact.corpus.values()]
    doc_embeddings, _ = encode(model, documents, 64, "scifact corpus")
    query_embeddings, _ = encode(model, list(scifact.queries.values()), 64, "scifact queries")
    exact_scores, _ = search_and_score(doc_embeddings, query_embeddings, scifact)
    scifact_points = []
    for factory, (knob, values) in small_corpus_sweep(len(documents)).items():
        for value in values:
            compare = EvaluateConfig(index=factory, **{knob: value}, seed=args.seed)
            scores, speeds = search_and_score(doc_embeddings, query_embeddings, scifact, compare)
            scifact_points.append({"index": factory, knob: value, "exact_ndcg@10": exact_scores["ndcg@10"],
                                   "ndcg@10": scores["approx_ndcg@10"],
                                   "recall@10_vs_exact": scores["approx_recall@10_vs_exact"] / 100,
                                   "queries_per_s": speeds["approx_search_queries_per_s"],
                                   "exact_queries_per_s": speeds["search_queries_per_s"]})

    # 1M derived vectors: the speed/recall curve.
    vectors = derived_vectors(doc_embeddings, args.vectors + args.queries, args.seed, args.clusters)
    corpus, queries = vectors[:args.vectors], vectors[args.vectors:]
    large_points = sweep(corpus, queries, LARGE_SWEEP, args.train_size, args.seed)

    record = {"kind": ANN_KIND, "config": {**vars(args), "data_dir": str(args.data_dir),
                                                  "output_dir": str(args.output_dir), "argv": sys.argv[1:]},
              "environment": run_environment,
              "vectors": {"rows": args.vectors, "queries": args.queries, "dim": int(corpus.shape[1]),
                          "derived_from": f"`{model_label(args.model)}` embeddings of the SciFact corpus "
                                          f"({len(documents):,} documents): " + (
                                              "one Gaussian with their mean and covariance" if args.clusters == 1
                                              else f"a mixture of {args.clusters} Gaussians (k-means centres, and "
                                                   "the covariance of the points around them)") +
                                          ", L2-normalised"},
              "large": large_points, "scifact": scifact_points, "wall_seconds": time.perf_counter() - started}
    write_record(run_dir / "record.json", record)
    best = best_at_target_recall([AnnPoint.model_validate(point) for point in large_points])
    if best:
        print(f"fastest at recall@10 >= {TARGET_RECALL}: {best.index} {best.search_parameters}, "
              f"{best.queries_per_s:.0f} queries/s = {best.queries_per_s / best.exact_queries_per_s:.1f}x exact search")
    return 0


if __name__ == "__main__":
    sys.exit(main())
