"""The configurations of the commands that encode and score, each frozen, validated and built from the command line
(cli/main.py) or in Python, then passed down: EncoderConfig (what every command that encodes shares), ScoringConfig
(what `evaluate` and `finetune` share), EvaluateConfig (`evaluate`) and GeometryConfig (`geometry`); BM25Config (`bm25`,
the lexical reference) and CompareConfig (`compare`) score no model of their own but are declared here beside them.

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
    NOT_SETUP,
    check_dims,
    check_encoding,
    check_index_options,
    check_seed,
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
    # Left out (None): the model as given, a sentence-transformers model with its own modules (pooling, Dense,
    # Normalize), a plain encoder with mean pooling, the paper's default ("Avg. BERT embeddings"). Given (its Table 6
    # ablates cls and max): any model rebuilt as its transformer + this pooling. Resolved here: records hold "mean"
    # for one left out, and `pooling_defaulted` says it was.
    pooling: str | None = None
    # Prompts put before every query and every document a retrieval task encodes (E5's "query: "), as text or by a
    # name the model defines (its `prompts`); None: the model's own "query" and "document" prompts, where it has them.
    query_prompt: str | None = None
    query_prompt_name: str | None = None
    document_prompt: str | None = None
    document_prompt_name: str | None = None
    device: str = field(default="auto", metadata=NOT_SETUP)
    precision: str = "auto"  # see PRECISIONS; records hold the resolved one
    # run code shipped with a model: only for models you trust
    trust_remote_code: bool = field(default=False, metadata=NOT_SETUP)
    output_dir: Path = field(default=Path("runs/run"), metadata=NOT_SETUP)  # the run (or index) folder to create
    overwrite: bool = field(default=False, metadata=NOT_SETUP)  # replace an existing folder
    # Options given on the command line, for the record; not part of the run's meaning.
    argv: tuple[str, ...] = field(default=(), compare=False, metadata=NOT_SETUP)
    # --pooling was left out: the model as given
    pooling_defaulted: bool = field(default=False, repr=False, metadata=NOT_SETUP)

    def __post_init__(self) -> None:
        resolve_pooling(self)
        check_encoding(self.pooling, self.device, self.precision)
        check_prompts(self.query_prompt, self.query_prompt_name, "query")
        check_prompts(self.document_prompt, self.document_prompt_name, "document")

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as JSON-ready values (the pooling resolved; the record's `modules` say what
        was scored)."""
        return {key: json_value(value) for key, value in asdict(self).items() if key != "pooling_defaulted"}


def json_value(value: Any) -> Any:
    """A config value as a record holds it: a path as a string, a tuple as a list."""
    return str(value) if isinstance(value, Path) else [json_value(v) for v in value] if isinstance(value, tuple) \
        else value


DEFAULT_POOLING = "mean"  # a plain encoder's, left out: the paper's "Avg. BERT embeddings"


def resolve_pooling(config: Any) -> None:
    """A frozen config's pooling left out (None): DEFAULT_POOLING, marked `pooling_defaulted`."""
    if config.pooling is None:
        object.__setattr__(config, "pooling", DEFAULT_POOLING)
        object.__setattr__(config, "pooling_defaulted", True)


def given_pooling(config: Any) -> str | None:
    """--pooling as given (None: left out, so the model is scored as given)."""
    return None if config.pooling_defaulted else config.pooling


def check_prompts(text: str | None, name: str | None, role: str) -> None:
    """--ROLE-prompt (text) and --ROLE-prompt-name (a prompt the model defines) are two ways to say one thing."""
    if text is not None and name is not None:
        raise UsageError(f"--{role}-prompt and --{role}-prompt-name both given; give the prompt's text or the name "
                         "of one the model defines, not both")
    if name is not None and not name.strip():
        raise UsageError(f"--{role}-prompt-name: empty; give the name of a prompt the model defines")


@dataclass(frozen=True)
class ScoringConfig(EncoderConfig):
    """What `evaluate` and `finetune` share: the tasks scored and where their data comes from."""

    # None: load every task from the hub; a folder: local copies laid out as ../shared/data.
    data_dir: Path | None = None
    sts_tasks: tuple[str, ...] = field(default=TABLE1_STS_TASKS, metadata=NOT_SETUP)
    # Registry names or paths of folders in BEIR layout (a folder is reported by its name).
    retrieval_tasks: tuple[str, ...] = field(default=DEFAULT_RETRIEVAL_TASKS, metadata=NOT_SETUP)
    retrieval_split: str | None = None  # the judgements scored; None: each task's own (mteb's, "test")
    # Tokens per input while scoring. None: the model's own limit (its sentence_bert_config.json, else
    # its tokenizer's, at most 512), as MTEB scores; it only matters for long documents (SciFact).
    eval_max_seq_length: int | None = None
    eval_batch_size: int = field(default=64, metadata=NOT_SETUP)  # encoding batch; does not change scores
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
    # vectors sampled to train IVF/PQ, drawn with `seed`; None: 64 a list (search/faiss_index.training_size)
    index_train_size: int | None = None
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
        check_seed("--seed", self.seed)
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
    pooling: str | None = None  # as EncoderConfig's: None, each model as given
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
    pooling_defaulted: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if not (self.models or self.runs or self.random_models):
            raise UsageError("nothing to measure: give --model, --run or --random-weights (each may repeat)")
        resolve_pooling(self)
        check_encoding(self.pooling, self.device, self.precision)
        for name in self.sts_tasks:
            one_of("--sts-tasks", name, STS_TASKS, "task")
        for option, value in {"--pairs": self.pairs, "--eval-batch-size": self.eval_batch_size,
                              "--eval-max-seq-length": self.eval_max_seq_length}.items():
            positive(option, value)
        check_seed("--seed", self.seed)
        if self.sample < 2:
            raise UsageError(f"--sample must be at least 2 sentences (pairs and a covariance need two), "
                             f"got {self.sample}")
        if not self.sts_tasks and self.sentences is None:
            raise UsageError("--sts-tasks none and no --sentences: no sentences to measure on; give one of them")

    to_dict = EncoderConfig.to_dict


BM25_METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")  # bm25s's variants
BM25_STEMMERS = ("english", "none")
BM25_STOPWORDS = ("en", "none")


@dataclass(frozen=True)
class BM25Config:
    """`sbert-repro bm25`: BM25 (bm25s) on the retrieval tasks, scored as the dense models are. The defaults are
    BEIR's Elasticsearch BM25 as near as bm25s comes: Lucene's scoring at Lucene's (and Elasticsearch's) k1 1.2 and
    b 0.75, English stop words and an English stemmer (Snowball's; Elasticsearch's english analyzer uses Porter's)."""

    data_dir: Path | None = None  # as ScoringConfig: local copies, else the hub
    retrieval_tasks: tuple[str, ...] = DEFAULT_RETRIEVAL_TASKS
    retrieval_split: str | None = None
    k1: float = 1.2
    b: float = 0.75
    method: str = "lucene"
    stemmer: str = "english"  # PyStemmer's Snowball stemmer; "none": words as they are
    stopwords: str = "en"  # bm25s's English list; "none": keep every word
    output_dir: Path = Path("runs/bm25")
    overwrite: bool = False
    argv: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.retrieval_tasks:
            raise UsageError("--retrieval-tasks none: BM25 scores retrieval tasks only; name at least one")
        check_retrieval_tasks(self.retrieval_tasks)
        split_name("--retrieval-split", self.retrieval_split, "such as test, dev or train: ")
        if not (self.k1 >= 0 and 0.0 <= self.b <= 1.0):  # also false for NaN
            raise UsageError(f"--k1 must be >= 0 and --b in [0, 1] (BM25's saturation and length normalisation), "
                             f"got {self.k1} and {self.b}")
        one_of("--method", self.method, BM25_METHODS, "BM25 variant")
        one_of("--stemmer", self.stemmer, BM25_STEMMERS, "stemmer")
        one_of("--stopwords", self.stopwords, BM25_STOPWORDS, "stop-word list")

    to_dict = EncoderConfig.to_dict


@dataclass(frozen=True)
class CompareConfig:
    """`sbert-repro compare RUN_A RUN_B`: the paired difference of two runs' per-query scores on every task both
    scored, with scipy's paired t-test."""

    run_a: Path
    run_b: Path
    metric: str = "ndcg@10"  # one the per-query files hold (checked against them)
