"""The configurations of the commands that encode and score, each frozen, validated and built from the command line
(cli/main.py) or in Python, then passed down: EncoderConfig (what every command that encodes shares), ScoringConfig
(what `evaluate` and `finetune` share), EvaluateConfig (`evaluate`) and GeometryConfig (`geometry`).

Each field is checked once, where it is declared, so a bad value is one line whoever builds the config (the
command line, a benchmark, a test). Every default is the paper's (Reimers & Gurevych 2019, section 4.2 and the
sentence-transformers code it released) unless its comment says otherwise. The fully resolved config is saved
in every run record: its field names are record keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sbert_repro.config.checks import (
    EXACT_INDEX,
    check_dims,
    check_encoding,
    check_index_options,
    one_of,
    parse_postprocess,
    positive,
    split_name,
)
from sbert_repro.data.tasks import (
    DEFAULT_RETRIEVAL_TASKS,
    STS_TASKS,
    TABLE1_STS_TASKS,
    check_retrieval_tasks,
)
from sbert_repro.errors import UsageError


@dataclass(frozen=True)
class EncoderConfig:
    """What every command that encodes shares: the model and how it runs."""

    # The encoder: a hub name or a local folder. The paper's raw model is bert-base-uncased.
    model: str = "bert-base-uncased"
    # mean is the paper's default ("Avg. BERT embeddings"); its Table 6 ablates cls and max.
    pooling: str = "mean"
    device: str = "auto"
    precision: str = "auto"  # see PRECISIONS; records hold the resolved one
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
    # Post-processing without training before scoring (model/transforms.py): center, whiten[-K] or abtt-D; for
    # finetune, of the raw model's baseline only. None: the vectors as the model gives them.
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
    # --rerank: a cross-encoder that re-scores each query's top rerank_top_k of the exact search
    # (evaluation/reranking.py); None: no re-ranking. 100: the depth the retrieval metrics look at.
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
