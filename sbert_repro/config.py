"""The run configuration: one frozen object built from the command line and passed down the pipeline.

Every default is the paper's (Reimers & Gurevych 2019, section 4.2 and the sentence-transformers code it
released) unless its comment says otherwise. The fully resolved config is saved in every run record.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sbert_repro.errors import UsageError
from sbert_repro.tasks import (
    DEFAULT_RETRIEVAL_TASKS,
    NLI_TASKS,
    RETRIEVAL_TASKS,
    STS_TASKS,
    TABLE1_STS_TASKS,
    check_retrieval_tasks,
    parse_retrieval_tasks,
    parse_task_list,
)

POOLING_MODES = ("mean", "cls", "max")
# sts-cosine: the STSb fine-tune (paper Table 2, SBERT-STSb). nli-softmax: the paper's NLI objective
# (SBERT-NLI, Table 1). nli-mnrl: the ranking loss sentence-transformers now recommends for NLI pairs.
# nli-then-stsb: nli-softmax, then sts-cosine from its weights (SBERT-NLI-STSb, Table 2).
# Each objective's training stages, in order.
OBJECTIVE_STAGES = {"sts-cosine": ("sts-cosine",), "nli-softmax": ("nli-softmax",), "nli-mnrl": ("nli-mnrl",),
                    "nli-then-stsb": ("nli-softmax", "sts-cosine")}
OBJECTIVES = tuple(OBJECTIVE_STAGES)
# The softmax classifier's input, as the paper's Table 6 ablates it; (u, v, |u-v|) is its choice.
CONCATENATIONS = ("u,v", "|u-v|", "u*v", "|u-v|,u*v", "u,v,u*v", "u,v,|u-v|", "u,v,|u-v|,u*v")
DEVICES = ("auto", "cpu", "cuda", "mps")
# Number formats. auto: bf16 where the hardware computes it natively, else fp32. Training keeps fp32 weights
# and runs the forward pass in bf16 autocast; encoding runs on a bf16 copy of the weights. int8 (dynamic
# quantization of the Linear layers, CPU) is for encoding only.
PRECISIONS = ("auto", "fp32", "bf16", "int8")


@dataclass(frozen=True)
class RunConfig:
    # The encoder: a hub name or a local folder. The paper's raw model is bert-base-uncased.
    model: str = "bert-base-uncased"
    # mean is the paper's default ("Avg. BERT embeddings"); its Table 6 ablates cls and max.
    pooling: str = "mean"
    # None: load every task from the hub; a folder: local copies laid out as ../shared/data.
    data_dir: Path | None = None
    output_dir: Path = Path("runs/run")
    objective: str = "sts-cosine"
    epochs: int = 4  # the paper trains on STSb for 4 epochs
    nli_epochs: int = 1  # and on NLI for 1
    nli_task: str = "allnli"  # SNLI + MultiNLI, the paper's NLI training data
    nli_split: str = "train"
    concat: str = "u,v,|u-v|"
    batch_size: int = 16  # paper: batch size 16
    lr: float = 2e-5  # paper: Adam(W) with learning rate 2e-5
    warmup_ratio: float = 0.1  # paper: linear learning-rate warm-up over 10% of the training data
    # Not stated in the paper; 0.01 is the default of the sentence-transformers fit() it was run with.
    weight_decay: float = 0.01
    seed: int = 42  # the seed of the training run at hand
    # Every seed of the run: the fine-tune is repeated once per seed (paper Table 2: 10 seeds, mean +- std).
    seeds: tuple[int, ...] = (42,)
    max_seq_length: int = 128  # tokens per sentence while training (paper's code: 128)
    # Tokens per input while scoring. None: the model's own limit (its sentence_bert_config.json, else
    # its tokenizer's, at most 512), as MTEB scores; it only matters for long documents (SciFact).
    eval_max_seq_length: int | None = None
    eval_batch_size: int = 64  # encoding batch; does not change scores
    sts_tasks: tuple[str, ...] = TABLE1_STS_TASKS
    # Registry names or paths of folders in BEIR layout (a folder is reported by its name).
    retrieval_tasks: tuple[str, ...] = DEFAULT_RETRIEVAL_TASKS
    retrieval_split: str | None = None  # the judgements scored; None: each task's own (mteb's, "test")
    max_train_samples: int | None = None  # None: all 5,749 STSb train pairs
    # Not in the paper (random batches): batches of pairs of similar length, in random order, pad less.
    group_by_length: bool = True
    precision: str = "auto"  # see PRECISIONS; records hold the resolved one (fp32 before this option existed)
    # Retrieval at scale (`sbert-repro index`; `evaluate --index` compares with exact search): a faiss
    # index_factory string, "Flat" being exact search, and its search-time knobs (None: faiss's defaults).
    index: str = "Flat"
    nprobe: int | None = None  # IVF lists visited per query (faiss: 1)
    ef_search: int | None = None  # HNSW candidates kept per query (faiss: 16)
    index_train_size: int = 100_000  # vectors sampled to train IVF/PQ (faiss asks for >= 39 per IVF list)
    corpus: Path | None = None  # `index`: the corpus (JSON lines, or a BEIR folder)
    encode_chunk_size: int = 8192  # `index`: rows encoded between two progress records
    encode_processes: int = 1  # `index`: CPU processes encoding side by side (several GPUs: one each)
    # Checkpoints: at each epoch's end, and every save_steps steps when > 0 (a CPU epoch of bert-base is
    # hours long); the newest keep_checkpoints are kept, plus the best one.
    save_steps: int = 0
    keep_checkpoints: int = 2
    resume: bool = False  # continue the run in output_dir from its latest checkpoint
    overwrite: bool = False  # replace an existing run folder
    trust_remote_code: bool = False  # run code shipped with a model: only for models you trust
    mteb: bool = False  # evaluate: also score through mteb's own API (needs the hub)
    device: str = "auto"
    # Options given on the command line, for the record; not part of the run's meaning.
    argv: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        positive_ints = {"--epochs": self.epochs, "--nli-epochs": self.nli_epochs, "--batch-size": self.batch_size,
                         "--max-seq-length": self.max_seq_length, "--eval-batch-size": self.eval_batch_size,
                         "--train-size": self.index_train_size, "--chunk-size": self.encode_chunk_size,
                         "--processes": self.encode_processes}
        for option, value in positive_ints.items():
            if value <= 0:
                raise UsageError(f"{option} must be a positive integer, got {value}")
        if self.save_steps < 0:
            raise UsageError(f"--save-steps must be 0 (each epoch only) or a positive integer, got {self.save_steps}")
        if self.keep_checkpoints <= 0:
            raise UsageError(f"--keep-checkpoints must be a positive integer, got {self.keep_checkpoints}")
        if self.resume and self.overwrite:
            raise UsageError("--resume and --overwrite contradict each other; pass one")
        for option, value in {"--max-train-samples": self.max_train_samples,
                              "--eval-max-seq-length": self.eval_max_seq_length,
                              "--nprobe": self.nprobe, "--ef-search": self.ef_search}.items():
            if value is not None and value <= 0:
                raise UsageError(f"{option} must be a positive integer, got {value}")
        check_index_options(self.index, self.nprobe, self.ef_search)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"--lr must be a positive number, got {self.lr}")
        if not (0.0 <= self.warmup_ratio < 1.0):
            raise UsageError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UsageError(f"--weight-decay must be a non-negative number, got {self.weight_decay}")
        if self.seed not in self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UsageError(f"--seeds must list distinct seeds including --seed; got {list(self.seeds)}")
        if self.objective not in OBJECTIVES:
            raise UsageError(f"--objective: unknown objective {self.objective!r}; choose from {', '.join(OBJECTIVES)}")
        if self.nli_task not in NLI_TASKS:
            raise UsageError(f"--nli-task: unknown task {self.nli_task!r}; choose from {', '.join(NLI_TASKS)}")
        if self.concat not in CONCATENATIONS:
            raise UsageError(f"--concat: unknown concatenation {self.concat!r}; "
                             f"choose from {', '.join(CONCATENATIONS)}")
        if self.pooling not in POOLING_MODES:
            raise UsageError(f"--pooling: unknown mode {self.pooling!r}; choose from {', '.join(POOLING_MODES)}")
        if self.device not in DEVICES:
            raise UsageError(f"--device: unknown device {self.device!r}; choose from {', '.join(DEVICES)} "
                             "(pick a GPU with CUDA_VISIBLE_DEVICES)")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision: unknown format {self.precision!r}; choose from {', '.join(PRECISIONS)}")
        if self.precision == "int8" and self.encode_processes > 1:
            raise UsageError(f"--precision int8 with --processes {self.encode_processes}: a quantized model cannot "
                             "be sent to other processes; encode in one process, or use --precision bf16")
        for name in self.sts_tasks:
            if name not in STS_TASKS:
                raise UsageError(f"--sts-tasks: unknown task {name!r}; choose from {', '.join(STS_TASKS)}")
        check_retrieval_tasks(self.retrieval_tasks)
        if self.retrieval_split is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", self.retrieval_split):
            raise UsageError(f"--retrieval-split: {self.retrieval_split!r} is not a split name (such as test, dev "
                             "or train: the qrels file qrels/<split>.tsv)")

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as JSON-ready values."""
        return {key: (str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple)
                      else value) for key, value in asdict(self).items()}


def check_index_options(index: str | None, nprobe: int | None, ef_search: int | None) -> None:
    """An index string and search-time knobs that fit it (the string itself is faiss's to judge)."""
    if index is not None and not index.strip():
        raise UsageError("--index: empty; give a faiss index_factory string such as Flat, IVF4096,Flat or HNSW32")
    if nprobe is not None and index is not None and "IVF" not in index:
        raise UsageError(f"--nprobe: the index {index!r} has no IVF lists to probe; leave --nprobe out")
    if ef_search is not None and index is not None and "HNSW" not in index:
        raise UsageError(f"--ef-search: the index {index!r} is not an HNSW graph; leave --ef-search out")


@dataclass(frozen=True)
class SearchConfig:
    """`sbert-repro search`: queries against an index folder made by `sbert-repro index`."""

    index_dir: Path
    queries: tuple[str, ...] = ()  # from the command line; else queries_file, else stdin
    queries_file: Path | None = None  # one query per line; "-" is stdin
    top_k: int = 10
    nprobe: int | None = None  # None: as the index was built
    ef_search: int | None = None
    device: str = "auto"
    json: bool = False  # one JSON object per query instead of a table
    trust_remote_code: bool = False  # needed again if the index's model ships its own code
    model: str | None = None  # None: the index's own; else a copy of it (same fingerprint), e.g. moved elsewhere

    def __post_init__(self) -> None:
        for option, value in {"--top-k": self.top_k, "--nprobe": self.nprobe, "--ef-search": self.ef_search}.items():
            if value is not None and value <= 0:
                raise UsageError(f"{option} must be a positive integer, got {value}")
        if self.device not in DEVICES:
            raise UsageError(f"--device: unknown device {self.device!r}; choose from {', '.join(DEVICES)}")


class _OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad option is one line on stderr and exit status 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _add_model_and_data_options(parser: argparse.ArgumentParser) -> None:
    d = RunConfig()
    parser.add_argument("--model", default=d.model,
                        help="Hugging Face model name or local folder (default: %(default)s)")
    parser.add_argument("--pooling", default=d.pooling, choices=POOLING_MODES,
                        help="how token vectors become one sentence vector (default: %(default)s)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="read every task from this folder (layout of ../shared/data, see README) "
                             "instead of the Hugging Face hub")
    parser.add_argument("--output-dir", type=Path, default=None,
                        help="run folder to create (default: runs/<timestamp>-<model>)")
    parser.add_argument("--sts-tasks", default=",".join(d.sts_tasks),
                        help=f"comma-separated STS tasks, 'all' or 'none' (default: all; "
                             f"from {', '.join(STS_TASKS)})")
    parser.add_argument("--retrieval-tasks", default=",".join(d.retrieval_tasks),
                        help=f"comma-separated retrieval tasks: names from {', '.join(RETRIEVAL_TASKS)}, 'all' "
                             "(every one: large downloads) or 'none', or paths of folders in BEIR layout "
                             "(corpus.jsonl, queries.jsonl, qrels/<split>.tsv; a path without commas) "
                             "(default: %(default)s)")
    parser.add_argument("--retrieval-split", default=None,
                        help="the judgements to score, qrels/<split>.tsv (default: each task's own, test; "
                             "stsb-retrieval is always STSb test)")
    parser.add_argument("--eval-max-seq-length", type=int, default=None,
                        help="tokens per input when scoring (default: the model's own limit)")
    parser.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size,
                        help="sentences per encoding batch (default: %(default)s)")
    parser.add_argument("--device", default=d.device, choices=DEVICES,
                        help="where to run (default: auto = cuda if visible, else cpu)")
    _add_precision_option(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --output-dir (default: refuse to touch it)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let the model run code shipped with it (default: off; only for models you trust)")


def _add_precision_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", default=RunConfig().precision, choices=PRECISIONS,
                        help="number format: bf16 trains in bf16 autocast and encodes with bf16 weights, int8 "
                             "encodes with int8 Linear layers (CPU, encoding only), auto = bf16 where the GPU or "
                             "CPU (AVX512-BF16, AMX) computes it natively, else fp32 (default: %(default)s)")


def _add_index_options(parser: argparse.ArgumentParser, exact_by_default: bool) -> None:
    d = RunConfig()
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
                        help="vectors sampled to train IVF/PQ indexes (default: %(default)s)")


def _add_training_options(parser: argparse.ArgumentParser) -> None:
    d = RunConfig()
    parser.add_argument("--objective", default=d.objective, choices=OBJECTIVES,
                        help="what to train on: sts-cosine (STSb, CosineSimilarityLoss), nli-softmax (NLI, the "
                             "paper's SoftmaxLoss), nli-mnrl (NLI, MultipleNegativesRankingLoss), nli-then-stsb "
                             "(nli-softmax, then sts-cosine) (default: %(default)s)")
    parser.add_argument("--nli-task", default=d.nli_task, choices=tuple(NLI_TASKS),
                        help="NLI training set (default: %(default)s = SNLI + MultiNLI)")
    parser.add_argument("--nli-split", default=d.nli_split, help="its split (default: %(default)s)")
    parser.add_argument("--nli-epochs", type=int, default=d.nli_epochs,
                        help="passes over the NLI data (default: %(default)s)")
    parser.add_argument("--concat", default=d.concat, choices=CONCATENATIONS,
                        help="nli-softmax classifier input (paper Table 6) (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=d.epochs,
                        help="passes over STSb train (sts-cosine) (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size,
                        help="training pairs per step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=d.lr, help="AdamW peak learning rate (default: %(default)s)")
    parser.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio,
                        help="share of steps with linear warm-up (default: %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay,
                        help="AdamW weight decay (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed (default: %(default)s)")
    parser.add_argument("--seeds", default=None,
                        help="repeat the fine-tune per seed and report mean +- std: a count N (seeds --seed .. "
                             "--seed+N-1) or a comma-separated list, which replaces --seed (default: just --seed)")
    parser.add_argument("--max-seq-length", type=int, default=d.max_seq_length,
                        help="tokens per sentence while training (default: %(default)s)")
    parser.add_argument("--max-train-samples", type=int, default=None,
                        help="train on the first N training pairs only, in every stage (default: all)")
    parser.add_argument("--group-by-length", action=argparse.BooleanOptionalAction, default=d.group_by_length,
                        help="batch pairs of similar length together, batches in random order (less padding); "
                             "--no-group-by-length: random batches, as the paper (default: %(default)s)")
    parser.add_argument("--save-steps", type=int, default=d.save_steps,
                        help="also checkpoint (and score validation) every N steps; 0 = each epoch only "
                             "(default: %(default)s)")
    parser.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints,
                        help="newest checkpoints kept besides the best (default: %(default)s)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in --output-dir from its latest checkpoint "
                             "(optimizer, scheduler, RNG and data order restored)")


FINETUNE_HELP = "baseline -> siamese cosine fine-tune on STSb -> re-score -> gain table"


def build_parser(prog: str = "sbert-repro") -> argparse.ArgumentParser:
    """The `sbert-repro` command line: `evaluate` and `finetune`."""
    parser = _OneLineErrorParser(prog=prog, description="Reproduce Sentence-BERT: score and fine-tune "
                                 "sentence encoders on STS and retrieval.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineErrorParser)
    evaluate = commands.add_parser("evaluate", help="score a model on the STS and retrieval tasks (no training)")
    _add_model_and_data_options(evaluate)
    evaluate.add_argument("--mteb", action="store_true",
                          help="also score the tasks mteb has through mteb's own API and keep its result files "
                               "(needs the Hugging Face hub)")
    _add_index_options(evaluate, exact_by_default=False)
    finetune = commands.add_parser("finetune", help=FINETUNE_HELP)
    _add_model_and_data_options(finetune)
    _add_training_options(finetune)
    _add_index_command(commands.add_parser("index", help="encode a corpus to disk and save a searchable FAISS index"))
    _add_search_command(commands.add_parser("search", help="answer queries from an index made by `index`"))
    return parser


def _add_index_command(parser: argparse.ArgumentParser) -> None:
    d = RunConfig()
    parser.add_argument("--model", default=d.model, help="Hugging Face model name or local folder "
                        "(default: %(default)s)")
    parser.add_argument("--pooling", default=d.pooling, choices=POOLING_MODES, help="(default: %(default)s)")
    parser.add_argument("--corpus", type=Path, required=True,
                        help='JSON lines of {"_id", "title" (optional), "text"}, or a BEIR folder with corpus.jsonl')
    parser.add_argument("--output-dir", type=Path, required=True, help="index folder to create")
    _add_index_options(parser, exact_by_default=True)
    parser.add_argument("--batch-size", dest="eval_batch_size", type=int, default=d.eval_batch_size,
                        help="sentences per encoding batch (default: %(default)s)")
    parser.add_argument("--max-seq-length", dest="eval_max_seq_length", type=int, default=None,
                        help="tokens per document (default: the model's own limit)")
    parser.add_argument("--chunk-size", dest="encode_chunk_size", type=int, default=d.encode_chunk_size,
                        help="rows encoded between two progress records (default: %(default)s)")
    parser.add_argument("--processes", dest="encode_processes", type=int, default=d.encode_processes,
                        help="CPU processes encoding side by side; with several GPUs one runs per GPU "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the training sample (default: %(default)s)")
    parser.add_argument("--device", default=d.device, choices=DEVICES, help="(default: %(default)s)")
    _add_precision_option(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted encode in --output-dir (or rebuild its index with other "
                             "--index options, without encoding again)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing index folder")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let the model run code shipped with it (only for models you trust)")


def _add_search_command(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("queries", nargs="*", help="queries (default: --queries-file, else standard input)")
    parser.add_argument("--index-dir", type=Path, required=True, help="a folder made by `sbert-repro index`")
    parser.add_argument("--queries-file", type=Path, default=None, help="one query per line; - is standard input")
    parser.add_argument("--top-k", type=int, default=10, help="hits per query (default: %(default)s)")
    parser.add_argument("--nprobe", type=int, default=None, help="IVF lists searched (default: as built)")
    parser.add_argument("--ef-search", type=int, default=None, help="HNSW candidate list (default: as built)")
    parser.add_argument("--device", default="auto", choices=DEVICES, help="(default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="one JSON object per query: query, hits (id, score, text)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="let the index's model run code shipped with it (only for models you trust)")
    parser.add_argument("--model", default=None,
                        help="the index's model from another place (its weights and tokenizer must be the ones "
                             "the index was built with; default: the model index.json names)")


def build_finetune_parser(prog: str) -> argparse.ArgumentParser:
    """The same options as `sbert-repro finetune`, for scripts/finetune.py."""
    parser = _OneLineErrorParser(prog=prog, description=FINETUNE_HELP)
    _add_model_and_data_options(parser)
    _add_training_options(parser)
    parser.set_defaults(command="finetune")
    return parser


def default_output_dir(model: str, now: datetime | None = None) -> Path:
    """runs/<YYYYmmdd-HHMMSS-microseconds>-<last part of the model name or path>: microseconds, so that runs
    started in the same second (a loop of jobs) get folders of their own."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S-%f")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model.rstrip("/\\")).name or "model")
    return Path("runs") / f"{stamp}-{name}"


def parse_seeds(value: str | None, first_seed: int) -> tuple[int, ...]:
    """'5' -> five seeds from first_seed on; '1,7,9' -> those seeds; None -> (first_seed,)."""
    if value is None:
        return (first_seed,)
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--seeds: {value!r} is neither a count nor a comma-separated list of integers") from None
    if not numbers:
        raise UsageError(f"--seeds: {value!r} names no seed; give a count or a comma-separated list")
    if "," in value:
        return tuple(numbers)
    if numbers[0] <= 0:
        raise UsageError(f"--seeds: a count must be a positive integer, got {value!r}")
    return tuple(range(first_seed, first_seed + numbers[0]))


def config_from_args(args: argparse.Namespace, argv: list[str]) -> RunConfig:
    """The RunConfig a parsed command line asks for; fields a command lacks keep their defaults."""
    values = {key: value for key, value in vars(args).items() if key != "command"}
    if "seeds" in values:
        values["seeds"] = parse_seeds(values["seeds"], values["seed"])
        values["seed"] = values["seeds"][0]
    elif "seed" in values:
        values["seeds"] = (values["seed"],)
    if "sts_tasks" in values:
        values["sts_tasks"] = parse_task_list(values["sts_tasks"], STS_TASKS, "--sts-tasks")
        values["retrieval_tasks"] = parse_retrieval_tasks(values["retrieval_tasks"])
    if values.get("resume") and values["output_dir"] is None:
        raise UsageError("--resume needs --output-dir: the folder of the run to continue")
    if values["output_dir"] is None:
        values["output_dir"] = default_output_dir(values["model"])
    return RunConfig(**values, argv=tuple(argv))


def search_config_from_args(args: argparse.Namespace) -> SearchConfig:
    """The SearchConfig of a parsed `sbert-repro search` command line."""
    return SearchConfig(**{key: tuple(value) if key == "queries" else value
                           for key, value in vars(args).items() if key != "command"})
