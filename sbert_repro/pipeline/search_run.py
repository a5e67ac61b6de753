"""`sbert-repro search`: queries encoded with the index folder's own model (or a copy of it), searched, and the
hits printed."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from sentence_transformers import SentenceTransformer

from sbert_repro.config.checks import check_index_options
from sbert_repro.config.hardware import resolve_device, resolve_precision
from sbert_repro.config.indexing import SearchConfig
from sbert_repro.data.sources import id_field, text_field
from sbert_repro.errors import UsageError
from sbert_repro.evaluation.run_files import spaced_id, trec_lines, trec_tag
from sbert_repro.model.encoder import (
    build_model,
    model_fingerprint,
    model_reference,
    model_setup,
    resolve_prompt,
    setup_mismatch,
)
from sbert_repro.model.precision import for_inference
from sbert_repro.model.transforms import apply_and_normalise, load_transform
from sbert_repro.runs.folders import write_failed
from sbert_repro.runs.records import write_text_atomic
from sbert_repro.search.faiss_index import search, set_search_parameters
from sbert_repro.search.output import print_results
from sbert_repro.search.store import POSTPROCESS, read_documents, read_index_folder

logger = logging.getLogger(__name__)


def read_queries(config: SearchConfig) -> list[tuple[str, str]]:
    """The queries as (id, text): from the command line (ids 1, 2, ...), else --queries-file (- is stdin): one
    query per line, or BEIR queries JSONL ({"_id", "text"} per line, ids its own), else stdin when piped."""
    if config.queries:
        blank = [number for number, query in enumerate(config.queries, start=1) if not query.strip()]
        if blank:
            raise UsageError(f"query {blank[0]} on the command line is blank; give each query some text")
        return [(str(number), query.strip()) for number, query in enumerate(config.queries, start=1)]
    if config.queries_file is not None and str(config.queries_file) != "-":
        try:
            text = config.queries_file.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark is no text
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"--queries-file {config.queries_file}: cannot read it as UTF-8 text "
                             f"({getattr(error, 'strerror', None) or type(error).__name__})") from None
    elif config.queries_file is not None or not sys.stdin.isatty():
        text = sys.stdin.read().removeprefix("\ufeff")
    else:
        raise UsageError("no queries: give them as arguments, with --queries-file FILE, or on standard input")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise UsageError("no queries: the input holds only blank lines")
    if lines[0].startswith("{"):
        return _beir_queries(lines, str(config.queries_file or "standard input"))
    return [(str(number), line) for number, line in enumerate(lines, start=1)]


def _beir_queries(lines: list[str], source: str) -> list[tuple[str, str]]:
    """BEIR queries JSONL: each line {"_id", "text"}, checked as the BEIR loader checks a queries file."""
    queries: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        where = f"--queries-file {source}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UsageError(f"{where}: not valid JSON ({error.msg}); give one query per line, or BEIR queries "
                             "JSONL ({\"_id\", \"text\"} per line)") from None
        if not isinstance(row, dict):
            raise UsageError(f"{where}: expected a JSON object with _id and text; fix the line")
        queries[id_field(row, where, queries, source)] = text_field(row, "text", where)
    return list(queries.items())


def _index_model(config: SearchConfig, meta: dict[str, Any], dim: int, device: str) -> SentenceTransformer:
    """The model the index was encoded with (or --model, if its fingerprint is the same), in the number format
    the documents were encoded in (an index that records none was encoded in fp32)."""
    built, folder = meta["config"], config.index_dir
    reference = model_reference(config.model) if config.model else meta.get("model", built["model"])
    try:
        # An index that records no module list was encoded by a model rebuilt as transformer + its pooling.
        pooling = meta["pooling_given"] if "pooling_given" in meta else built["pooling"]
        base = build_model(reference, pooling, device, config.trust_remote_code)
    except UsageError as error:
        if config.model:
            raise
        raise UsageError(f"--index-dir {folder}: cannot load the model it was built with ({error}); "
                         "give a copy of that model with --model") from None
    if base.get_embedding_dimension() != dim:
        raise UsageError(f"{'--model ' + config.model if config.model else reference}: gives "
                         f"{base.get_embedding_dimension()}-dimensional vectors, and {folder} holds {dim}-dimensional "
                         "ones; search with the model the index was built with")
    recorded = meta.get("model_sha256")
    if recorded is None and config.model:
        raise UsageError(f"--model {config.model}: {folder} records no fingerprint of its model to check this one "
                         "against; leave --model out, or rebuild the index")
    if recorded is not None and model_fingerprint(base) != recorded:
        raise UsageError(f"{'--model ' + config.model if config.model else reference}: its weights or tokenizer "
                         f"are not those {folder} was encoded with (fingerprint {model_fingerprint(base)[:12]}, the "
                         f"index's {recorded[:12]}); give the model the index was built with")
    _check_setup(meta, base, config, reference)
    model = for_inference(base, resolve_precision(built.get("precision", "fp32"), device))
    model.max_seq_length = meta["max_seq_length"]
    return model


def _check_setup(meta: dict[str, Any], base: SentenceTransformer, config: SearchConfig, reference: str) -> None:
    """The model's modules (pooling, Dense, Normalize) as the index recorded them: queries pooled otherwise than the
    documents would be searched without a word. An index that recorded none is searched, with one warning."""
    if "modules_sha256" not in meta:
        logger.warning("%s: its index.json records no fingerprint of the model's modules (pooling, Dense), so a "
                       "change to them is not checked; rebuild the index to pin them", config.index_dir)
        return
    mismatch = setup_mismatch(meta, model_setup(base))
    if mismatch is not None:
        raise UsageError(f"{'--model ' + config.model if config.model else reference}: its modules are not those "
                         f"{config.index_dir} was encoded with ({mismatch.replace('recorded', 'index', 1)}); give the "
                         "model the index was built with, or rebuild the index")


def search_index(config: SearchConfig) -> list[dict[str, Any]]:
    """`sbert-repro search`: encode the queries with the index's own model, search, print the hits."""
    folder = config.index_dir
    meta, index = read_index_folder(folder)
    check_index_options(meta["config"]["index"], config.nprobe, config.ef_search)
    queries = read_queries(config)
    set_search_parameters(index, config.nprobe, config.ef_search)
    transform = load_transform(folder / POSTPROCESS, "--index-dir") if meta.get("postprocess") else None
    model = _index_model(config, meta, len(transform.mean) if transform else index.d, resolve_device(config.device))
    query_embeddings = model.encode_query([text for _, text in queries], prompt=_query_prompt(config, meta, model),
                                          normalize_embeddings=transform is None, convert_to_numpy=True)
    if transform is not None:  # the documents' transform, applied to the queries too
        query_embeddings = apply_and_normalise(transform, query_embeddings)
    scores, rows = search(index, query_embeddings, config.top_k)
    results = []
    for (query_id, query), query_scores, query_rows in zip(queries, scores, rows, strict=True):
        found = [(score, row) for score, row in zip(query_scores.tolist(), query_rows.tolist(), strict=True)
                 if row >= 0]
        documents = read_documents(folder, [row for _, row in found])
        results.append({"query_id": query_id, "query": query, "hits": [
            {"rank": rank, "id": document["_id"], "score": score, "title": document["title"], "text": document["text"]}
            for rank, ((score, _), document) in enumerate(zip(found, documents, strict=True), start=1)]})
    if config.run_file is not None:
        _write_run_file(config.run_file, results, run_tag(meta, folder))
    print_results(results, config.json)
    return results


def run_tag(meta: dict[str, Any], folder: Path) -> str:
    """The TREC run tag of a search of `folder`: its model's label and the folder's name, so that runs of two indexes
    (or of two models) never share a tag."""
    return f"{trec_tag(meta.get('model') or meta['config']['model'])}@{trec_tag(folder.resolve().name)}"


def _write_run_file(path: Path, results: list[dict[str, Any]], tag: str) -> None:
    """--run-file: the hits as a TREC run (qid Q0 docid rank score tag), written whole or not at all."""
    run = {result["query_id"]: {hit["id"]: hit["score"] for hit in result["hits"]} for result in results}
    spaced = spaced_id(run)
    if spaced is not None:
        raise UsageError(f"--run-file {path}: the id {spaced!r} holds whitespace, which a TREC run line cannot; use "
                         "--json, or ids without whitespace")
    try:
        write_text_atomic(path, "".join(line + "\n" for line in trec_lines(run, tag)))
    except OSError as error:
        raise write_failed(error) from None


def _query_prompt(config: SearchConfig, meta: dict[str, Any], model: SentenceTransformer) -> str | None:
    """search's --query-prompt(-name), else the one the index was built with, else the model's own."""
    if config.query_prompt is not None or config.query_prompt_name is not None:
        return resolve_prompt(model, config.query_prompt, config.query_prompt_name, "query")
    return meta.get("prompts", {}).get("query") or resolve_prompt(model, None, None, "query")
