"""The command line's options: one argparse parser per `sbert-repro` command, and scripts/finetune.py's.

Each option's default is read from the config it fills (config/), which also checks its value: argparse only
parses. A bad option is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from sbert_repro.cli.training_options import add_training_options
from sbert_repro.config.checks import DEVICES, POOLING_MODES, POSTPROCESS_FORMS, PRECISIONS
from sbert_repro.config.encoding import (
    BM25_METHODS,
    BM25_STEMMERS,
    BM25_STOPWORDS,
    BM25Config,
    EncoderConfig,
    EvaluateConfig,
    GeometryConfig,
)
from sbert_repro.config.indexing import IndexConfig
from sbert_repro.config.objectives import OBJECTIVE_REGISTRY
from sbert_repro.data.tasks import RETRIEVAL_TASKS, STS_TASKS


def package_version() -> str:
    """The installed package's version (pyproject takes it from sbert_repro.__version__)."""
    try:
        return metadata.version("sbert-repro")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown (not installed)"


class _OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr and exit status 2 (no usage dump); every command and
    subcommand answers --version."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - argparse's own
        super().__init__(*args, **kwargs)
        # a value such as --lr -1e-3 is a number (argparse's own pattern has no exponent), for its config to judge
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
        self.add_argument("--version", action="version", version=f"sbert-repro {package_version()}")

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _add_model_and_data_options(parser: argparse.ArgumentParser, trains: bool) -> None:
    """The options evaluate and finetune share, each help written for the command (`trains`: finetune's)."""
    d = EvaluateConfig()
    parser.add_argument("--model", default=d.model,
                        help="Hugging Face model name or local folder (default: %(default)s)")
    parser.add_argument("--pooling", default=None, help=POOLING_HELP)
    _add_prompt_options(parser, ("query", "document"))
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="read every task from this folder (layout of ../shared/data, see README) "
                             "instead of the Hugging Face hub")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="run folder to create (default: runs/<timestamp>-<model>)")
    parser.add_argument("--sts-tasks", default=None,
                        help=f"comma-separated STS tasks, 'all' or 'none' (default: all"
                             f"{'; --objective cross-encoder-retrieval: none' if trains else ''}; from "
                             f"{', '.join(STS_TASKS)})")
    parser.add_argument("--retrieval-tasks", default=None,
                        help=f"comma-separated retrieval tasks: names from {', '.join(RETRIEVAL_TASKS)}, 'all' "
                             "(every one: large downloads) or 'none', or paths of folders in BEIR layout "
                             "(corpus.jsonl, queries.jsonl, qrels/<split>.tsv; a path without commas) "
                             f"(default: {','.join(d.retrieval_tasks)}; --objective cross-encoder: none; "
                             "cross-encoder-retrieval: --train-task)")
    parser.add_argument("--retrieval-split", default=None,
                        help="the judgements to score, qrels/<split>.tsv (default: each task's own, test; "
                             "stsb-retrieval is always STSb test)")
    parser.add_argument("--eval-max-seq-length", type=int, default=None,
                        help="tokens per input when scoring (default: the model's own limit)")
    parser.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size,
                        help="sentences per encoding batch (default: %(default)s)")
    parser.add_argument("--device", default=d.device,
                        help=f"where to run: {', '.join(DEVICES)} (default: auto = cuda if visible, else cpu)")
    _add_precision_option(parser, trains)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --output-dir (default: refuse to touch it)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let the model run code shipped with it (default: off; only for models you trust)")
    parser.add_argument("--postprocess", default=None,
                        help=f"transform the vectors before scoring, without training: {POSTPROCESS_FORMS} (mean-"
                             "centering; BERT-whitening, optionally to K dimensions; all-but-the-top removal of D "
                             f"principal components){'; the baseline only' if trains else ''} (default: none)")
    parser.add_argument("--fit-on", type=Path, default=None,
                        help="fit --postprocess once on this file's lines (default: on each task's own sentences, "
                             "a retrieval task's corpus, as BERT-whitening does)")


POOLING_HELP = (f"rebuild the model as its transformer + this pooling: {', '.join(POOLING_MODES)} (default: the model "
                "as given: a sentence-transformers model with its own modules, pooling, Dense, Normalize; a plain "
                "Hugging Face encoder with mean pooling)")


def _add_prompt_options(parser: argparse.ArgumentParser, roles: tuple[str, ...]) -> None:
    for role in roles:
        plural = "queries" if role == "query" else "documents"
        parser.add_argument(f"--{role}-prompt", default=None,
                            help=f"text put before every one of the {plural} encoded for retrieval, e.g. "
                                 f"'{role if role == 'query' else 'passage'}: ' (default: the model's own "
                                 f"'{role}' prompt, where it has one)")
        parser.add_argument(f"--{role}-prompt-name", default=None,
                            help=f"the {role} prompt by the name the model gives it (its prompts)")


def _add_precision_option(parser: argparse.ArgumentParser, trains: bool = False) -> None:
    parser.add_argument("--precision", default=EncoderConfig().precision,
                        help=f"number format, {', '.join(PRECISIONS)}: bf16 (fp16) {'trains and ' if trains else ''}"
                             "encodes in bf16 "
                             "(loss-scaled fp16) autocast over fp32 weights, int8 encodes with int8 Linear layers "
                             "(CPU, encoding only), auto = bf16 where the GPU (compute capability >= 8.0) or CPU "
                             "(AVX512-BF16, AMX) computes it natively, fp16 on older CUDA GPUs, else fp32 "
                             "(default: %(default)s)")


def _add_index_options(parser: argparse.ArgumentParser, exact_by_default: bool) -> None:
    d = IndexConfig()
    parser.add_argument("--index", default=d.index,
                        help="faiss index_factory string: Flat (exact), IVF4096,Flat, HNSW32, IVF4096,PQ64, "
                             "OPQ64,IVF4096,PQ64, ... " + ("(default: %(default)s)" if exact_by_default else
                                                          "to compare with exact search on the retrieval tasks "
                                                          "(default: exact search only)"))
    parser.add_argument("--nprobe", type=int, default=None,
                        help="IVF lists searched per query (default: faiss's, 1)")
    parser.add_argument("--ef-search", type=int, default=None,
                        help="HNSW candidate list per query (default: faiss's, 16)")
    parser.add_argument("--train-size", dest="index_train_size", type=int, default=d.index_train_size,
                        help="vectors sampled to train IVF/PQ indexes (default: 64 for each IVF list or PQ "
                             "centroid, at most 1,048,576; faiss needs 39 a list)")


FINETUNE_HELP = (f"baseline -> fine-tune (--objective: one of {len(OBJECTIVE_REGISTRY)}, the paper's cosine loss on "
                 "STSb by default) -> re-score -> gain table")


def build_parser(prog: str = "sbert-repro") -> argparse.ArgumentParser:
    """The `sbert-repro` command line: evaluate, finetune, index, search and geometry."""
    parser = _OneLineErrorParser(prog=prog, description="Reproduce Sentence-BERT: score and fine-tune "
                                 "sentence encoders on STS and retrieval.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineErrorParser)
    evaluate = commands.add_parser("evaluate", help="score a model on the STS and retrieval tasks (no training)")
    _add_model_and_data_options(evaluate, trains=False)
    evaluate.add_argument("--mteb", action="store_true",
                          help="also score the tasks mteb has through mteb's own API and keep its result files "
                               "(needs the Hugging Face hub)")
    evaluate.add_argument("--dims", dest="eval_dims", default=None,
                          help="also score every task with vectors cut to these dimensions and re-normalised, "
                               "e.g. 64,128 (default: the full vectors only)")
    _add_index_options(evaluate, exact_by_default=False)
    evaluate.add_argument("--rerank", default=None,
                          help="a cross-encoder (a folder `finetune --objective cross-encoder` saved as model/, or "
                               "a hub name) that re-scores each query's top --rerank-top-k of the exact search; "
                               "the metrics after it are keyed task/rerank_<metric> (default: no re-ranking)")
    evaluate.add_argument("--rerank-top-k", type=int, default=EvaluateConfig().rerank_top_k,
                          help="search results re-scored per query; the rest keep their order below them "
                               "(default: %(default)s)")
    finetune = commands.add_parser("finetune", help=FINETUNE_HELP)
    _add_model_and_data_options(finetune, trains=True)
    add_training_options(finetune)
    _add_index_command(commands.add_parser("index", help="encode a corpus to disk and save a searchable FAISS index"))
    _add_search_command(commands.add_parser("search", help="answer queries from an index made by `index`"))
    _add_geometry_command(commands.add_parser("geometry", help="measure the space a model's sentence vectors fill: "
                                              "anisotropy, alignment and uniformity, spectrum, cosine by gold score"))
    _add_bm25_command(commands.add_parser("bm25", help="score BM25 (bm25s) on the retrieval tasks: the lexical "
                                          "reference beside the models"))
    compare = commands.add_parser("compare", help="the paired difference of two runs' per-query scores, per task, "
                                  "with a paired t-test")
    compare.add_argument("run_a", type=Path, help="a run folder (evaluate, finetune, bm25) with per-query scores")
    compare.add_argument("run_b", type=Path, help="another; the difference is B - A")
    compare.add_argument("--metric", default="ndcg@10", help="the per-query metric compared (default: %(default)s)")
    _add_terminal_options(*commands.choices.values())
    return parser


def _add_bm25_command(parser: argparse.ArgumentParser) -> None:
    d = BM25Config()
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="read every task from this folder (layout of ../shared/data) instead of the hub")
    parser.add_argument("--retrieval-tasks", default=None,
                        help=f"comma-separated task names or BEIR folders, or 'all' (default: "
                             f"{','.join(d.retrieval_tasks)})")
    parser.add_argument("--retrieval-split", default=None, help="the judgements scored (default: each task's own)")
    parser.add_argument("--k1", type=float, default=d.k1, help="term-frequency saturation (default: %(default)s)")
    parser.add_argument("--b", type=float, default=d.b, help="length normalisation (default: %(default)s)")
    parser.add_argument("--method", default=d.method, help=f"{', '.join(BM25_METHODS)} (default: %(default)s)")
    parser.add_argument("--stemmer", default=d.stemmer, help=f"{', '.join(BM25_STEMMERS)} (default: %(default)s)")
    parser.add_argument("--stopwords", default=d.stopwords, help=f"{', '.join(BM25_STOPWORDS)} "
                        "(default: %(default)s)")
    parser.add_argument("--output-dir", type=Path, default=None, help="run folder to create "
                        "(default: runs/<timestamp>-bm25)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")


def _add_geometry_command(parser: argparse.ArgumentParser) -> None:
    d = GeometryConfig(models=("m",))
    parser.add_argument("--model", dest="models", action="append", default=[],
                        help="a Hugging Face model name or local folder; repeat for several")
    parser.add_argument("--run", dest="runs", type=Path, action="append", default=[],
                        help="a finetune run folder: its raw model and its (first) fine-tuned model; may repeat")
    parser.add_argument("--random-weights", dest="random_models", action="append", default=[],
                        help="a model folder's config and tokenizer with random weights (seed 0), e.g. "
                             "../shared/models/bert-base-uncased-shape: the no-training control; may repeat")
    parser.add_argument("--pooling", default=None, help=POOLING_HELP)
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="local copies laid out as ../shared/data (default: the Hugging Face hub)")
    parser.add_argument("--sts-tasks", default="all",
                        help="whose test sentences make the sample (default: all); STSb test's pairs are always "
                             "read for alignment and cosine by gold score")
    parser.add_argument("--sentences", type=Path, default=None,
                        help="sample from this file's lines instead (one sentence per line)")
    parser.add_argument("--sample", type=int, default=d.sample, help="sentences sampled (default: %(default)s)")
    parser.add_argument("--pairs", type=int, default=d.pairs, help="random pairs for the mean cosine and the rogue "
                        "dimensions (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the sample and pairs (default: %(default)s)")
    parser.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size,
                        help="sentences per encoding batch (default: %(default)s)")
    parser.add_argument("--eval-max-seq-length", type=int, default=None,
                        help="tokens per sentence (default: the model's own limit)")
    parser.add_argument("--device", default=d.device, help=f"{', '.join(DEVICES)} (default: %(default)s)")
    _add_precision_option(parser)
    parser.add_argument("--output-dir", type=Path, default=None, help="run folder to create "
                        "(default: runs/<timestamp>-geometry)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output-dir")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let the models run code shipped with them (only for models you trust)")


def _add_index_command(parser: argparse.ArgumentParser) -> None:
    d = IndexConfig()
    parser.add_argument("--model", default=d.model, help="Hugging Face model name or local folder "
                        "(default: %(default)s)")
    parser.add_argument("--pooling", default=None, help=POOLING_HELP)
    _add_prompt_options(parser, ("document", "query"))
    parser.add_argument("--corpus", type=Path, required=True,
                        help='JSON lines of {"_id", "title" (optional), "text"}, or a BEIR folder with corpus.jsonl')
    parser.add_argument("--output-dir", type=Path, required=True, help="index folder to create")
    _add_index_options(parser, exact_by_default=True)
    parser.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size,
                        help="documents per encoding batch (default: %(default)s)")
    parser.add_argument("--eval-max-seq-length", type=int, default=None,
                        help="tokens per document (default: the model's own limit)")
    for old_name, new_name in (("--batch-size", "--eval-batch-size"), ("--max-seq-length", "--eval-max-seq-length")):
        parser.add_argument(old_name, action=_Renamed, new_name=new_name, help=argparse.SUPPRESS)
    parser.add_argument("--chunk-size", type=int, default=d.chunk_size,
                        help="rows encoded between two progress records (default: %(default)s)")
    parser.add_argument("--processes", type=int, default=d.processes,
                        help="CPU processes encoding side by side; with several GPUs one runs per GPU "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the training sample (default: %(default)s)")
    parser.add_argument("--device", default=d.device, help=f"{', '.join(DEVICES)} (default: %(default)s)")
    _add_precision_option(parser)
    parser.add_argument("--postprocess", type=Path, default=None,
                        help="a transform saved by `evaluate --postprocess` (its postprocess/<task>.npz): applied to "
                             "the documents, and by `search` to the queries (default: none)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted encode in --output-dir (or rebuild its index with other "
                             "--index options, without encoding again)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing index folder")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let the model run code shipped with it (only for models you trust)")


class _Renamed(argparse.Action):
    """An option spelt as finetune spells its training batch or length, given to a command that only encodes:
    refused in one line naming the option it means, so that one name means one thing."""

    def __init__(self, option_strings: list[str], dest: str, new_name: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=None, default=argparse.SUPPRESS, **kwargs)
        self.new_name = new_name

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.error(f"{option_string}: encoding here is {self.new_name}, as in evaluate ({option_string} is "
                     f"finetune's, for training); give {self.new_name} {values}")


def _add_search_command(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("queries", nargs="*", help="queries (default: --queries-file, else standard input)")
    parser.add_argument("--index-dir", type=Path, required=True,
                        help="a folder made by `sbert-repro index`; its index is memory-mapped (a Flat index's "
                             "vectors file, searched in slices, and IVF's lists stay on disk and in the page cache), "
                             "so a search holds what it reads")
    parser.add_argument("--queries-file", type=Path, default=None,
                        help="one query per line (ids 1, 2, ...), or BEIR queries JSONL ({\"_id\", \"text\"} per "
                             "line); - is standard input")
    parser.add_argument("--top-k", type=int, default=10, help="hits per query (default: %(default)s)")
    parser.add_argument("--nprobe", type=int, default=None, help="IVF lists searched (default: as built)")
    parser.add_argument("--ef-search", type=int, default=None, help="HNSW candidate list (default: as built)")
    parser.add_argument("--device", default="auto", help=f"{', '.join(DEVICES)} (default: %(default)s)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per query: query_id, query, hits (rank, id, score, title, text)")
    parser.add_argument("--run-file", type=Path, default=None,
                        help="also write the hits as a TREC run (qid Q0 docid rank score tag; the tag names the "
                             "index's model and folder), as trec_eval, pytrec_eval and ranx read it")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let the index's model run code shipped with it (only for models you trust)")
    parser.add_argument("--model", default=None,
                        help="the index's model from another place (its weights and tokenizer must be the ones "
                             "the index was built with; default: the model index.json names)")
    _add_prompt_options(parser, ("query",))


def build_finetune_parser(prog: str) -> argparse.ArgumentParser:
    """The same options as `sbert-repro finetune`, for scripts/finetune.py."""
    parser = _OneLineErrorParser(prog=prog, description=FINETUNE_HELP)
    _add_model_and_data_options(parser, trains=True)
    add_training_options(parser)
    _add_terminal_options(parser)
    parser.set_defaults(command="finetune")
    return parser


def _add_terminal_options(*parsers: argparse.ArgumentParser) -> None:
    for parser in parsers:
        parser.add_argument("--quiet", action="store_true",
                            help="no progress bars (they are off anyway when stderr is not a terminal)")
        parser.add_argument("--verbose", action="store_true",
                            help="the libraries' messages (transformers' load reports, warnings) on the terminal too; "
                                 "without it they go to ~/.cache/sbert-repro/logs/<command>.log "
                                 "($SBERT_REPRO_LOG_DIR)")
