"""One frozen, validated configuration per command, built from the command line (cli.py) and passed down:
EvaluateConfig (`evaluate`), TrainConfig (`finetune`), GeometryConfig (`geometry`); the `index` and `search`
commands' own are search/config.py's.

Every command that encodes shares EncoderConfig, and evaluate and finetune what scoring needs (ScoringConfig).
Each field is checked once, where it is declared, so a bad value is one line whoever builds the config (the
command line, a benchmark, a test). Every default is the paper's (Reimers & Gurevych 2019, section 4.2 and the
sentence-transformers code it released) unless its comment says otherwise. The fully resolved config is saved
in every run record, with the same keys a record has always had.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sbert_repro.dimensions import check_dims
from sbert_repro.errors import UsageError
from sbert_repro.geometry import parse_postprocess
from sbert_repro.objectives import (
    CROSS_ENCODER_OBJECTIVES,
    OBJECTIVE_DEFAULTS,
    OBJECTIVES,
    RETRIEVAL_TRAINING_OBJECTIVES,
    STS_OBJECTIVES,
)
from sbert_repro.tasks import (
    DEFAULT_RETRIEVAL_TASKS,
    NLI_TASKS,
    STS_TASKS,
    TABLE1_STS_TASKS,
    check_retrieval_tasks,
    retrieval_task,
)

POOLING_MODES = ("mean", "cls", "max")
# The softmax classifier's input, as the paper's Table 6 ablates it; (u, v, |u-v|) is its choice.
CONCATENATIONS = ("u,v", "|u-v|", "u*v", "|u-v|,u*v", "u,v,u*v", "u,v,|u-v|", "u,v,|u-v|,u*v")
DEVICES = ("auto", "cpu", "cuda", "mps")
# Number formats. auto: bf16 where the hardware computes it natively, else fp32. Training keeps fp32 weights
# and runs the forward pass in bf16 autocast; encoding runs on a bf16 copy of the weights. int8 (dynamic
# quantization of the Linear layers, CPU) is for encoding only.
PRECISIONS = ("auto", "fp32", "bf16", "int8")
EXACT_INDEX = "Flat"  # faiss's exact inner-product search


def positive(option: str, value: int | None) -> None:
    """A count option: a positive integer, or None where None means "not given"."""
    if value is not None and value <= 0:
        raise UsageError(f"{option} must be a positive integer, got {value}")


def one_of(option: str, value: str, choices: tuple[str, ...] | dict, what: str) -> None:
    if value not in choices:
        raise UsageError(f"{option}: unknown {what} {value!r}; choose from {', '.join(choices)}")


def split_name(option: str, value: str | None, example: str) -> None:
    """A qrels split name (the file qrels/<split>.tsv), not a path."""
    if value is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", value):
        raise UsageError(f"{option}: {value!r} is not a split name ({example}the qrels file qrels/<split>.tsv)")


def check_device(device: str) -> None:
    if device not in DEVICES:
        raise UsageError(f"--device: unknown device {device!r}; choose from {', '.join(DEVICES)} "
                         "(pick a GPU with CUDA_VISIBLE_DEVICES)")


def check_encoding(pooling: str, device: str, precision: str) -> None:
    """--pooling, --device and --precision, checked alike for evaluate, finetune, index and geometry."""
    one_of("--pooling", pooling, POOLING_MODES, "mode")
    check_device(device)
    one_of("--precision", precision, PRECISIONS, "format")


def check_index_options(index: str | None, nprobe: int | None, ef_search: int | None) -> None:
    """An index string and search-time knobs that fit it (the string itself is faiss's to judge)."""
    positive("--nprobe", nprobe)
    positive("--ef-search", ef_search)
    if index is not None and not index.strip():
        raise UsageError("--index: empty; give a faiss index_factory string such as Flat, IVF4096,Flat or HNSW32")
    if nprobe is not None and index is not None and "IVF" not in index:
        raise UsageError(f"--nprobe: the index {index!r} has no IVF lists to probe; leave --nprobe out")
    if ef_search is not None and index is not None and "HNSW" not in index:
        raise UsageError(f"--ef-search: the index {index!r} is not an HNSW graph; leave --ef-search out")


@dataclass(frozen=True)
class EncoderConfig:
    """What every command that encodes shares: the model and how it runs."""

    # The encoder: a hub name or a local folder. The paper's raw model is bert-base-uncased.
    model: str = "bert-base-uncased"
    # mean is the paper's default ("Avg. BERT embeddings"); its Table 6 ablates cls and max.
    pooling: str = "mean"
    device: str = "auto"
    precision: str = "auto"  # see PRECISIONS; records hold the resolved one (fp32 before this option existed)
    trust_remote_code: bool = False  # run code shipped with a model: only for models you trust
    output_dir: Path = Path("runs/run")  # the run (or index) folder to create
    overwrite: bool = False  # replace an existing folder
    # Options given on the command line, for the record; not part of the run's meaning.
    argv: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        check_encoding(self.pooling, self.device, self.precision)

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as JSON-ready values."""
        def plain(value: Any) -> Any:
            return str(value) if isinstance(value, Path) else [plain(v) for v in value] if isinstance(value, tuple) \
                else value

        return {key: plain(value) for key, value in asdict(self).items()}


@dataclass(frozen=True)
class ScoringConfig(EncoderConfig):
    """What `evaluate` and `finetune` share: the tasks scored and where their data comes from."""

    # None: load every task from the hub; a folder: local copies laid out as ../shared/data.
    data_dir: Path | None = None
    sts_tasks: tuple[str, ...] = TABLE1_STS_TASKS
    # Registry names or paths of folders in BEIR layout (a folder is reported by its name).
    retrieval_tasks: tuple[str, ...] = DEFAULT_RETRIEVAL_TASKS
    retrieval_split: str | None = None  # the judgements scored; None: each task's own (mteb's, "test")
    # Tokens per input while scoring. None: the model's own limit (its sentence_bert_config.json, else
    # its tokenizer's, at most 512), as MTEB scores; it only matters for long documents (SciFact).
    eval_max_seq_length: int | None = None
    eval_batch_size: int = 64  # encoding batch; does not change scores
    # Post-processing without training before scoring (geometry.py): center, whiten[-K] or abtt-D; for finetune,
    # of the raw model's baseline only. None: the vectors as the model gives them.
    postprocess: str | None = None
    # What it is fitted on: None, each task's own sentences (its STS test sentences, a retrieval task's corpus),
    # as BERT-whitening fits; else one transform for every task, fitted on this file's lines.
    fit_on: Path | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        positive("--eval-batch-size", self.eval_batch_size)
        positive("--eval-max-seq-length", self.eval_max_seq_length)
        for name in self.sts_tasks:
            one_of("--sts-tasks", name, STS_TASKS, "task")
        check_retrieval_tasks(self.retrieval_tasks)
        split_name("--retrieval-split", self.retrieval_split, "such as test, dev or train: ")
        if self.postprocess is not None:
            parse_postprocess(self.postprocess)
        elif self.fit_on is not None:
            raise UsageError("--fit-on: a file to fit --postprocess on, and no --postprocess is given; "
                             "give one (center, whiten, whiten-K, abtt-D) or leave --fit-on out")


@dataclass(frozen=True)
class EvaluateConfig(ScoringConfig):
    """`sbert-repro evaluate`: score a model, optionally comparing an approximate index with exact search."""

    mteb: bool = False  # also score through mteb's own API (needs the hub)
    # `--index`: a faiss index_factory string to compare with exact search ("Flat": exact only), its search-time
    # knobs (None: faiss's defaults) and the vectors sampled to train it, drawn with `seed`.
    index: str = EXACT_INDEX
    nprobe: int | None = None  # IVF lists visited per query (faiss: 1)
    ef_search: int | None = None  # HNSW candidates kept per query (faiss: 16)
    index_train_size: int = 100_000  # faiss asks for >= 39 vectors per IVF list
    seed: int = 42
    eval_dims: tuple[int, ...] = ()  # --dims: also score every task with vectors cut to these dimensions
    # --rerank: a cross-encoder that re-scores each query's top rerank_top_k of the exact search (cross_encoder.py);
    # None: no re-ranking. 100: the depth the retrieval metrics look at.
    rerank: str | None = None
    rerank_top_k: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        positive("--train-size", self.index_train_size)
        positive("--rerank-top-k", self.rerank_top_k)
        if self.rerank is not None and not self.retrieval_tasks:
            raise UsageError("--rerank re-ranks the retrieval tasks' search results, and --retrieval-tasks is none; "
                             "name a retrieval task or leave --rerank out")
        check_index_options(self.index, self.nprobe, self.ef_search)
        check_dims(self.eval_dims, "--dims", decreasing=False)
        if self.eval_dims and self.postprocess:
            raise UsageError("--dims with --postprocess: a transform reorders or mixes dimensions, so cutting its "
                             "output is another method (whiten-K keeps the top K components); give one of the two")


@dataclass(frozen=True)
class TrainConfig(ScoringConfig):
    """`sbert-repro finetune` (and scripts/finetune.py): baseline -> fine-tune -> re-score, once per seed."""

    objective: str = "sts-cosine"
    stsb_objective: str = "sts-cosine"  # nli-then-stsb's second stage: the paper's, or one of STS_OBJECTIVES
    # MatryoshkaLoss around the STS or retrieval loss at these dimensions, largest first; (): the plain loss.
    # The fine-tuned and raw models are then scored at each of them too.
    matryoshka_dims: tuple[int, ...] = ()
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
    max_train_samples: int | None = None  # None: all 5,749 STSb train pairs
    # --objective retrieval (retrieval_training.py): the task whose judgements are trained on, and its split.
    train_task: str = "scifact"
    train_split: str = "train"
    hard_negatives: int = 0  # mined per pair with the raw model through FAISS; 0: in-batch negatives only
    rerank_top_k: int | None = None  # cross-encoder-retrieval: each query's search results the re-ranker re-scores
    # A candidate scoring above (1 - margin) x the query's least similar relevant document is skipped as a
    # likely false negative (NV-Retriever's TopK-PercPos, 95%).
    negative_margin: float = 0.05
    mini_batch_size: int | None = None  # CachedMultipleNegativesRankingLoss's mini-batch; None: the plain loss
    validation_share: float = 0.1  # train queries held out to pick the best checkpoint (SciFact has no dev split)
    validation_seed: int = 42  # which ones: the same for every --seeds run
    validation_documents: int = 2000  # their search corpus: every judged document plus a sample of the rest
    # Not in the paper (random batches): batches of pairs of similar length, in random order, pad less.
    group_by_length: bool = True
    # Checkpoints: at each epoch's end, and every save_steps steps when > 0 (a CPU epoch of bert-base is
    # hours long); the newest keep_checkpoints are kept, plus the best one.
    save_steps: int = 0
    keep_checkpoints: int = 2
    resume: bool = False  # continue the run in output_dir from its latest checkpoint

    def __post_init__(self) -> None:
        super().__post_init__()
        for option, value in {"--epochs": self.epochs, "--nli-epochs": self.nli_epochs, "--batch-size": self.batch_size,
                              "--max-seq-length": self.max_seq_length, "--keep-checkpoints": self.keep_checkpoints,
                              "--max-train-samples": self.max_train_samples}.items():
            positive(option, value)
        if self.save_steps < 0:
            raise UsageError(f"--save-steps must be 0 (each epoch only) or a positive integer, got {self.save_steps}")
        if self.resume and self.overwrite:
            raise UsageError("--resume and --overwrite contradict each other; pass one")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"--lr must be a positive number, got {self.lr}")
        if not (0.0 <= self.warmup_ratio < 1.0):
            raise UsageError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UsageError(f"--weight-decay must be a non-negative number, got {self.weight_decay}")
        if self.seed not in self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UsageError(f"--seeds must list distinct seeds including --seed; got {list(self.seeds)}")
        one_of("--objective", self.objective, OBJECTIVES, "objective")
        one_of("--nli-task", self.nli_task, NLI_TASKS, "task")
        one_of("--concat", self.concat, CONCATENATIONS, "concatenation")
        if self.precision == "int8":
            raise UsageError("--precision int8: int8 is for encoding only (evaluate, index); "
                             "fine-tune in fp32 or bf16, or leave it at auto")
        self._check_retrieval_training()
        self._check_losses()

    def _check_retrieval_training(self) -> None:
        if self.hard_negatives < 0:
            raise UsageError(f"--hard-negatives must be 0 (in-batch negatives only) or a positive integer, "
                             f"got {self.hard_negatives}")
        if not 0.0 <= self.negative_margin < 1.0:
            raise UsageError(f"--negative-margin must be in [0, 1) (a share of the positive's score), "
                             f"got {self.negative_margin}")
        if not 0.0 < self.validation_share < 1.0:
            raise UsageError(f"--validation-share must be in (0, 1), got {self.validation_share}")
        positive("--mini-batch-size", self.mini_batch_size)
        positive("--validation-documents", self.validation_documents)
        positive("--rerank-top-k", self.rerank_top_k)
        if self.objective == "cross-encoder" and self.retrieval_tasks:
            raise UsageError(f"--retrieval-tasks with --objective {self.objective}: a cross-encoder scores pairs and "
                             "cannot index a corpus, so it is scored on the STS tasks only; leave --retrieval-tasks "
                             "out (re-rank a search with `evaluate --rerank`)")
        if self.objective == "cross-encoder-retrieval":
            self._check_reranker()
        elif self.rerank_top_k is not None:
            raise UsageError(f"--rerank-top-k is for --objective cross-encoder-retrieval, not {self.objective}; leave "
                             "it out (or re-rank a search with `evaluate --rerank`)")
        if self.objective not in RETRIEVAL_TRAINING_OBJECTIVES:
            for option, value, objectives in (
                    ("--hard-negatives", self.hard_negatives, " or ".join(RETRIEVAL_TRAINING_OBJECTIVES)),
                    ("--mini-batch-size", self.mini_batch_size, "retrieval")):
                if value:
                    raise UsageError(f"{option} is for --objective {objectives}, not {self.objective}; leave it out")
            return
        split_name("--train-split", self.train_split, "")
        retrieval_task(self.train_task, option="--train-task")  # a registry name or a BEIR folder

    def _check_reranker(self) -> None:
        """cross-encoder-retrieval learns relevant against not relevant, and is scored by re-ranking a search."""
        if not self.hard_negatives:
            default = OBJECTIVE_DEFAULTS["cross-encoder-retrieval"]["hard_negatives"]
            raise UsageError("--hard-negatives 0 with --objective cross-encoder-retrieval: a re-ranker learns from "
                             f"judged documents (label 1) against mined ones (label 0); give 1 or more (default: "
                             f"{default})")
        if self.mini_batch_size:
            raise UsageError("--mini-batch-size is for --objective retrieval's in-batch loss, not "
                             "cross-encoder-retrieval; leave it out")
        if self.sts_tasks:
            raise UsageError("--sts-tasks with --objective cross-encoder-retrieval: a re-ranker trained for search is "
                             "scored by re-ranking the retrieval tasks; leave --sts-tasks out (or give none)")
        if not self.retrieval_tasks:
            raise UsageError("--retrieval-tasks none with --objective cross-encoder-retrieval: it is scored by "
                             "re-ranking a retrieval task's search; name one, such as scifact")
        if self.postprocess:
            raise UsageError("--postprocess with --objective cross-encoder-retrieval: the re-ranker re-scores the raw "
                             "model's own search, so a post-processed baseline would be another search; leave it out")

    def _check_losses(self) -> None:
        one_of("--stsb-objective", self.stsb_objective, STS_OBJECTIVES, "objective")
        if self.stsb_objective != "sts-cosine" and self.objective != "nli-then-stsb":
            raise UsageError(f"--stsb-objective is for --objective nli-then-stsb, not {self.objective}; "
                             f"use --objective {self.stsb_objective}")
        if self.matryoshka_dims and self.objective in ("nli-softmax", "nli-mnrl", *CROSS_ENCODER_OBJECTIVES):
            raise UsageError(f"--matryoshka-dims is for the STS objectives, nli-then-stsb and retrieval, not "
                             f"{self.objective}; leave it out")
        check_dims(self.matryoshka_dims, "--matryoshka-dims", decreasing=True)
        if self.matryoshka_dims and self.postprocess:
            raise UsageError("--matryoshka-dims with --postprocess: the baseline is scored either cut to fewer "
                             "dimensions or post-processed; give one of the two")


@dataclass(frozen=True)
class GeometryConfig:
    """`sbert-repro geometry`: measure the embedding space of each model on one seeded sample of sentences."""

    models: tuple[str, ...] = ()  # hub names or local folders, measured as they are
    runs: tuple[Path, ...] = ()  # fine-tune run folders: their raw model and each seed's fine-tuned model
    # Model folders with a config and tokenizer but no weights (bert-base-uncased's shape in ../shared/models), built
    # with random weights (seed 0): the "no training at all" control.
    random_models: tuple[str, ...] = ()
    pooling: str = "mean"
    data_dir: Path | None = None  # as ScoringConfig: local copies, else the hub
    sts_tasks: tuple[str, ...] = TABLE1_STS_TASKS  # whose test sentences are the default sample
    sentences: Path | None = None  # else one sentence per line of this file
    sample: int = 5000  # sentences drawn (seeded) for anisotropy, uniformity and the spectrum
    pairs: int = 10_000  # random pairs for the mean cosine and the rogue dimensions
    seed: int = 0  # of the sample and the pairs: every model is measured on the same ones
    eval_batch_size: int = 64
    eval_max_seq_length: int | None = None
    device: str = "auto"
    precision: str = "auto"
    trust_remote_code: bool = False
    output_dir: Path = Path("runs/geometry")
    overwrite: bool = False
    argv: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not (self.models or self.runs or self.random_models):
            raise UsageError("nothing to measure: give --model, --run or --random-weights (each may repeat)")
        check_encoding(self.pooling, self.device, self.precision)
        for name in self.sts_tasks:
            one_of("--sts-tasks", name, STS_TASKS, "task")
        for option, value in {"--pairs": self.pairs, "--eval-batch-size": self.eval_batch_size,
                              "--eval-max-seq-length": self.eval_max_seq_length}.items():
            positive(option, value)
        if self.sample < 2:
            raise UsageError(f"--sample must be at least 2 sentences (pairs and a covariance need two), "
                             f"got {self.sample}")
        if not self.sts_tasks and self.sentences is None:
            raise UsageError("--sts-tasks none and no --sentences: no sentences to measure on; give one of them")

    to_dict = EncoderConfig.to_dict
