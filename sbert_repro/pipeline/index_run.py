"""`sbert-repro index`: a corpus, checked and copied into an index folder, encoded to disk (resumable), indexed
with FAISS and the index's recall checked against exact search (search/ builds and stores the pieces)."""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sentence_transformers import SentenceTransformer

from sbert_repro.config.encoding import given_pooling
from sbert_repro.config.hardware import resolved_with_reason
from sbert_repro.config.indexing import IndexConfig
from sbert_repro.data.corpus import iter_corpus
from sbert_repro.errors import UsageError
from sbert_repro.model.encoder import (
    build_model,
    eval_max_seq_length,
    model_fingerprint,
    model_reference,
    model_setup,
    module_names,
    resolve_prompts,
)
from sbert_repro.model.precision import for_inference
from sbert_repro.model.transforms import Transform, load_transform, save_transform
from sbert_repro.runs import progress
from sbert_repro.runs.environment import environment
from sbert_repro.runs.folders import (
    check_not_busy,
    fresh_staging,
    locked,
    make_dir,
    removed_on_failure,
    swap_in,
    write_failed,
)
from sbert_repro.runs.paths import path_label
from sbert_repro.runs.records import write_json_atomic
from sbert_repro.search.faiss_index import (
    EXACT,
    RECALL_DEPTH,
    Knobs,
    build_and_compare,
    check_index_before_encoding,
    empty_index,
    exact_search_in_slices,
    index_bytes,
    training_size,
)
from sbert_repro.search.store import (
    DOCUMENTS,
    EMBEDDINGS,
    INDEX,
    INDEX_META,
    OFFSETS,
    POSTPROCESS,
    POSTPROCESSED,
    PROGRESS,
    check_free_space,
    check_text_fits,
    encode_to_disk,
    encoding_pool,
    read_json,
    transform_to_disk,
    write_documents,
    write_index,
)

SELF_CHECK_QUERIES = 1000  # corpus vectors used as queries to measure a built index's recall


def check_index_dir(path: Path, resume: bool, overwrite: bool) -> None:
    """An --output-dir `index` may use: not being written by another process; new or empty; an index folder with
    --resume or --overwrite."""
    check_not_busy(path, "--output-dir")
    _check_index_dir_contents(path, resume, overwrite)


def _check_index_dir_contents(path: Path, resume: bool, overwrite: bool) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        is_index_dir = path.is_dir() and ((path / PROGRESS).is_file() or (path / INDEX_META).is_file())
        if (resume or overwrite) and is_index_dir:
            return
        if resume or overwrite:
            raise UsageError(f"--output-dir {path}: not an index folder (no {PROGRESS} or {INDEX_META}); "
                             f"{'nothing to resume' if resume else 'not deleting it'}; choose another folder")
        raise UsageError(f"--output-dir {path}: already exists and is not empty; choose a new folder, continue "
                         "it with --resume or replace it with --overwrite")
    if resume:
        raise UsageError(f"--resume: {path} holds no index to continue; give the --output-dir of an interrupted run")


def index_corpus(config: IndexConfig) -> dict[str, Any]:
    """`sbert-repro index`: corpus -> documents.jsonl -> embeddings on disk (resumable) -> index -> check.

    The command holds the folder's lock throughout (one writer per folder). With --overwrite everything is built
    in a staging folder beside it and swapped in at the end, so the old index answers searches until the new one
    is complete; a failed or interrupted replacement is deleted. A write that fails (a full or read-only disk) is
    one line; what an interrupted encode wrote stays, for --resume."""
    if config.corpus is None:
        raise UsageError("--corpus is required: a JSON lines corpus or a BEIR folder")
    if not config.corpus.exists():
        raise UsageError(f"--corpus {config.corpus}: no such file or folder")
    transform = load_transform(config.postprocess, "--postprocess") if config.postprocess else None
    folder = config.output_dir
    check_index_dir(folder, config.resume, config.overwrite)
    # The model as it resolves from anywhere (search may run in another directory), on the device and in the number
    # format resolved once, here.
    config, precision_reason = resolved_with_reason(replace(config, model=model_reference(config.model)))
    run_environment = environment(config.device, precision_reason)
    with locked(folder, "--output-dir"):
        _check_index_dir_contents(folder, config.resume, config.overwrite)  # again: another writer may have finished
        staging = fresh_staging(folder, "--output-dir")
        try:
            with removed_on_failure(staging):  # bad input leaves the target as it was, and nothing beside it
                model, rows, identity, read_s = _read_corpus(config, folder, staging, transform)
            # A new or resumed index is encoded in place, where a killed encode can be resumed.
            work = staging if config.overwrite else _move_documents(staging, folder)
            with removed_on_failure(staging) if config.overwrite else nullcontext():
                meta = _encode_and_index(config, work, model, rows, identity, transform)
                meta.update({"timings": {"read_corpus_s": read_s, **meta["timings"]}, "environment": run_environment})
                write_json_atomic(work / INDEX_META, meta)
                if config.overwrite:
                    swap_in(staging, folder)
        except OSError as error:
            raise write_failed(error) from None
    check = meta["self_check"]
    recall = check[f"recall@{RECALL_DEPTH}_vs_exact"]
    knobs = "".join(f" {name}={value}" for name, value in check["search_parameters"].items())
    print(progress.for_terminal(f"{folder}: {rows} documents, index {config.index}{knobs}, "
                                f"{check['bytes_per_vector']:.0f} bytes/vector; recall@{RECALL_DEPTH} against exact "
                                f"search {recall:.3f} at {check['queries_per_s']:.0f} queries/s (exact: "
                                f"{check['exact_queries_per_s']:.0f}/s)"))
    return meta


def _read_corpus(config: IndexConfig, folder: Path, staging: Path, transform: Transform | None
                 ) -> tuple[SentenceTransformer, int, dict[str, Any], float]:
    """1. The corpus, checked row by row and copied in row order into `staging` (search answers with its text),
    and the model; every check that can fail before encoding. Returns (model, rows, the corpus's and the model's
    sha256, seconds)."""
    progress.stage("reading the corpus")
    start = time.perf_counter()
    check_text_fits(config.corpus, folder, staging)
    rows, corpus_sha256 = write_documents(iter_corpus(config.corpus), staging)
    encoded = read_json(folder, PROGRESS) if config.resume and (folder / PROGRESS).is_file() else {}
    if encoded and encoded.get("corpus_sha256") != corpus_sha256:
        raise UsageError(f"--resume: {folder} was encoded from another corpus than {config.corpus}; "
                         "give the same corpus, or start afresh with --overwrite")
    base = build_model(config.model, given_pooling(config), config.device, config.trust_remote_code)
    resolve_prompts(base, config)  # a prompt name the model lacks: one line, before any encoding
    model_sha256 = model_fingerprint(base)
    if encoded and encoded.get("model_sha256", model_sha256) != model_sha256:
        # The same path may hold other weights now (retrained, re-downloaded): rows of two models do not mix.
        raise UsageError(f"--resume: {folder} was encoded by a model with other weights or tokenizer than "
                         f"{config.model} (fingerprint {encoded['model_sha256'][:12]}, this one {model_sha256[:12]}); "
                         "give the model it was encoded with, or start afresh with --overwrite")
    model = for_inference(base, config.precision)
    model.max_seq_length = eval_max_seq_length(model, config.eval_max_seq_length)
    dim = model.get_embedding_dimension()
    if transform is not None:
        if transform.mean.shape != (dim,):
            raise UsageError(f"--postprocess {config.postprocess}: fitted on {len(transform.mean)}-dimensional "
                             f"vectors, and {config.model} gives {dim}-dimensional ones; give a transform fitted "
                             "with this model")
    index_dim = transform.projection.shape[1] if transform is not None else dim  # what the index holds
    check_index_before_encoding(config.index, index_dim, rows, config.index_train_size, config.nprobe,
                                config.ef_search)
    needed = {EMBEDDINGS: rows * dim * 4, **({POSTPROCESSED: rows * index_dim * 4} if transform is not None else {}),
              **({INDEX: index_bytes(config.index, index_dim, rows)} if config.index != EXACT else {})}
    check_free_space(folder, staging, needed, config.resume)  # staging: beside the folder, on its disk
    # the modules too: a pooling or Dense changed at the same path encodes otherwise, and rows of two do not mix
    return model, rows, {"corpus_sha256": corpus_sha256, "model_sha256": model_sha256, **model_setup(base)}, \
        time.perf_counter() - start


def _move_documents(staging: Path, folder: Path) -> Path:
    folder = make_dir(folder, "--output-dir")  # a link to a folder not yet made: made where the link points
    for name in (DOCUMENTS, OFFSETS):
        os.replace(staging / name, folder / name)
    staging.rmdir()
    return folder


def _encode_and_index(config: IndexConfig, folder: Path, model: SentenceTransformer, rows: int,
                      fingerprints: dict[str, Any], transform: Transform | None) -> dict[str, Any]:
    """2-3. Embeddings into `folder` chunk by chunk (a killed encode continues where it stopped), the index (of the
    transformed vectors, with --postprocess), and its recall against exact search on a sample of corpus vectors
    used as queries; returns index.json's content."""
    timings: dict[str, float] = {}
    progress.stage("encoding the corpus")
    start = time.perf_counter()
    # The model by fingerprint, not by path: a moved copy resumes, other weights at the same path do not.
    prompts = resolve_prompts(model, config)
    identity = {**fingerprints, "pooling": config.pooling, "max_seq_length": model.max_seq_length,
                "precision": config.precision, **({"document_prompt": prompts.document} if prompts.document else {})}
    with encoding_pool(model, config.processes, config.device) as pool:
        # A transform applies to the vectors as the model gives them, as it was fitted (evaluate --postprocess).
        embeddings = encode_to_disk(model, folder, rows, identity, config.eval_batch_size,
                                    config.chunk_size, pool, normalize=transform is None, prompt=prompts.document)
    timings["encode_s"] = time.perf_counter() - start
    postprocess = {}
    if transform is not None:
        embeddings = transform_to_disk(transform, embeddings, folder / POSTPROCESSED, config.chunk_size)
        save_transform(transform, folder / POSTPROCESS)
        postprocess = {"postprocess": {"option": transform.option, "from": path_label(str(config.postprocess)),
                                       "file": POSTPROCESS}}

    progress.stage("building the index")
    sample = np.sort(np.random.default_rng(config.seed).choice(rows, size=min(SELF_CHECK_QUERIES, rows),
                                                              replace=False))
    queries = np.ascontiguousarray(embeddings[sample])
    _, exact_rows, exact_per_s = exact_search_in_slices(embeddings, queries, RECALL_DEPTH)  # on disk: in slices
    vectors = {}
    if config.index == EXACT:  # search reads the vectors file itself: a Flat index would copy it, in memory and on disk
        timings["build_index_s"] = 0.0
        (folder / INDEX).unlink(missing_ok=True)  # a Flat index built here before (index --resume --index Flat)
        vectors = {"vectors": POSTPROCESSED if transform is not None else EMBEDDINGS}
        check = {"search_parameters": {}, "queries_per_s": exact_per_s, "exact_queries_per_s": exact_per_s,
                 f"recall@{RECALL_DEPTH}_vs_exact": 1.0, "bytes_per_vector": 4.0 * embeddings.shape[1]}
    else:
        built = build_and_compare(config.index, embeddings, queries, exact_rows, exact_per_s,
                                  config.index_train_size, config.seed, [Knobs(config.nprobe, config.ef_search)],
                                  measure_size=False)
        timings["build_index_s"] = built.build_s
        # its size from the file written: serialising an index in memory to measure it would hold it twice
        check = {**built.comparisons[0].measured, "bytes_per_vector": write_index(built.index, folder) / rows}
    return {"kind": "index", "config": config.to_dict(), "model": config.model, **fingerprints, "rows": rows,
            # how search rebuilds the model (None: as given) and the prompts its documents took and its queries take
            "pooling_given": given_pooling(config), "modules": module_names(model), "prompts": prompts.to_dict(),
            "dim": int(embeddings.shape[1]), "max_seq_length": model.max_seq_length, **postprocess, **vectors,
            "training_vectors": training_size(empty_index(config.index, int(embeddings.shape[1])), rows,
                                              config.index_train_size),
            "self_check": {"queries": f"{len(sample)} corpus vectors", **check}, "timings": timings}

