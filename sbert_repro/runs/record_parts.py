"""The parts that records are made of (runs/schema.py puts them together into one model per kind of record): what a
run was made with, a model's scores, a training stage, a geometry measurement, a benchmark's measured points.

Each part declares the fields that the pages read or that a reader needs to trust a number; detail beyond that is kept
as it was written (extra keys are allowed), so a record carries more than the pages show without failing its schema.
Maps keyed by data (scores by "task/metric", versions by package) stay maps, read through a method that says what is
missing (None) rather than failing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Part(BaseModel):
    """A part of a record: types checked strictly (a seed "42" is refused), keys it does not declare kept as they are
    (a record may carry detail no page reads, or an option a later version dropped)."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    @property
    def assumed(self) -> tuple[str, ...]:
        """The declared fields this part's JSON did not hold, read as their documented default: the record predates
        the field (a config option added later), or the field does not apply to its run (a re-ranker's
        finetuned_is on a bi-encoder's record)."""
        return tuple(name for name in type(self).model_fields if name not in self.model_fields_set)


# ----------------------------------------------------------------------------- what a run was made with

class Git(Part):
    commit: str | None
    dirty: bool | None


class Hardware(Part):
    device: str
    cpu: str
    cpu_cores: int | None
    torch_threads: int
    platform: str
    processes: int = 1
    cpu_flags: list[str] | None = None  # None: recorded before the CPU's flags were
    gpu: str | None = None
    gpu_capability: str | None = None  # CUDA compute capability, "9.0"
    gpus_visible: int | None = None
    cuda: str | None = None


class Environment(Part):
    python: str
    packages: dict[str, str | None]  # None: the package was not installed, or its version was not read
    hardware: Hardware
    git: Git

    def version(self, package: str) -> str | None:
        """The package's version, or None where the record does not hold one."""
        return self.packages.get(package)


# ----------------------------------------------------------------------------- scores

class Scored(Part):
    """A model's scores on the tasks (x100, keyed "task/metric": stsb/spearman, scifact/ndcg@10), and how fast it
    encoded and searched them."""

    scores: dict[str, float]
    speeds: dict[str, float] = {}
    baseline_is: str | None = None
    retrieval_files: dict[str, dict[str, str]] = {}

    def score(self, key: str) -> float | None:
        """The score under "task/metric", or None where it was not scored (never 0)."""
        return self.scores.get(key)


class Postprocess(Part):
    """What --postprocess fitted, on which data, and where it is saved."""

    option: str
    fitted_on: dict[str, str] = {}
    dimensions: dict[str, int] = {}
    files: dict[str, str] = {}


# ----------------------------------------------------------------------------- training

class LossPoint(Part):
    epoch: float
    step: int
    loss: float


class TrainingStage(Part):
    """One training stage of a fine-tune: what it trained on and how it went."""

    objective: str = "sts-cosine"  # the one objective of the runs recorded before stages named theirs
    train_data: str | None = None
    train_pairs: int | None = None
    epochs: int | float | None = None
    steps: int | None = None
    steps_per_s: float | None = None
    train_seconds: float | None = None
    final_train_loss: float | None = None
    loss: dict[str, Any] | None = None  # the sentence-transformers loss: its class and get_config_dict()
    loss_history: list[LossPoint] = []
    validation_history: list[dict[str, int | float]] = []  # epoch, step and "validation_<metric>" per evaluation
    best_epoch: float | None = None
    best_checkpoint: str | None = None
    resumed_from: str | None = None
    weights_dtype: str | None = None  # what the trained weights were held in ("float32"); None: not recorded
    trained_on: str | None = None  # each process's one device ("cuda:1"; under torchrun rank 0's); None: not recorded

    def best_validation(self, metric: str) -> float | None:
        """The best validation score by `metric` ("spearman", "ndcg@10"), or None where it was not recorded."""
        return (self.model_extra or {}).get(f"best_validation_{metric}")

    @property
    def pos_weight(self) -> float | None:
        """A re-ranker's weight on each relevant pair in its BinaryCrossEntropyLoss (the loss's recorded config), or
        None where the loss has none."""
        return (self.loss or {}).get("pos_weight")

    def validation_curve(self, metric: str) -> tuple[list[float], list[float]]:
        """Epochs and validation scores by `metric`, where the history holds it."""
        points = [point for point in self.validation_history if f"validation_{metric}" in point]
        return [point.get("epoch", 0.0) for point in points], [point[f"validation_{metric}"] for point in points]


class Timings(Part):
    """Seconds each step of a fine-tune took (pipeline/finetune_run.py's STAGES), and in all."""

    total_s: float
    baseline_eval_s: float | None = None
    train_s: float | None = None
    finetuned_eval_s: float | None = None
    load_data_s: float | None = None
    build_model_s: float | None = None
    mining_s: float | None = None
    candidates_s: float | None = None
    save_model_s: float | None = None


class HardNegatives(Part):
    per_pair: int
    pairs_mined: int | None = None
    pairs_given_random_negatives: int | None = None


class RetrievalTraining(Part):
    """How a retrieval fine-tune split its judgements and mined its negatives."""

    train_queries: int
    validation_queries: int
    train_pairs: int
    validation_documents: int | None = None
    hard_negatives: HardNegatives | None = None


# ----------------------------------------------------------------------------- geometry (analysis/geometry.py)

class Anisotropy(Part):
    mean_cosine: float
    centered_mean_cosine: float
    pairs: int


class Spectrum(Part):
    top1_share: float
    top10_share: float
    effective_rank: float


class RogueDimensions(Part):
    dimensions: list[int]
    contributions: list[float]
    share: float
    mean_cosine: float


class GoldBin(Part):
    low: float
    high: float
    count: int
    mean: float | None  # None: no gold pair fell in the bin
    std: float | None
    quartiles: list[float] | None = None


class GoldBins(Part):
    bins: list[GoldBin]
    separation: float | None


class Histograms(Part):
    edges: list[float]
    random_pairs: list[int]
    gold_bins: list[list[int]]


class GeometryModel(Part):
    """One model's space: how its vectors lie."""

    model: str
    role: str  # raw, fine-tuned, random weights
    run: str | None = None
    objective: str | None = None
    seed: int | None = None
    dimension: int
    anisotropy: Anisotropy
    alignment: float
    uniformity: float
    spectrum: Spectrum
    eigenvalues: list[float]
    rogue_dimensions: RogueDimensions
    gold_bins: GoldBins
    histograms: Histograms
    encode_s: float | None = None


class Sentences(Part):
    source: str = Field(alias="from")
    distinct: int
    sampled: int


class GoldPairs(Part):
    task: str
    pairs: int
    aligned_pairs: int


# ----------------------------------------------------------------------------- benchmarks (benchmarks/*.py)

class BenchmarkConfig(Part):
    """A benchmark's options as its parser read them."""

    model: str
    data_dir: str | None = None
    output_dir: str
    seed: int = 0
    argv: list[str] = []


class AnnPoint(Part):
    """One index setting's speed and recall@10 against exact search (and, on a real task, its nDCG@10)."""

    index: str
    queries_per_s: float
    exact_queries_per_s: float
    recall_at_10_vs_exact: float = Field(alias="recall@10_vs_exact")
    search_parameters: dict[str, int] = {}
    build_s: float | None = None
    bytes_per_vector: float | None = None
    ndcg_at_10: float | None = Field(None, alias="ndcg@10")
    exact_ndcg_at_10: float | None = Field(None, alias="exact_ndcg@10")

    def parameters(self) -> dict[str, int]:
        """The search knobs of this point (nprobe, ef_search), wherever the record put them."""
        knobs = {key: value for key, value in (self.model_extra or {}).items() if key in ("nprobe", "ef_search")}
        return {**self.search_parameters, **knobs}


class ScalePoint(Part):
    """One command at one corpus size (benchmarks/scale.py): its wall time in a process of its own, the time its own
    work took (own_s: the record's, no interpreter start), and its peak resident and private memory."""

    rows: int
    command: Literal["evaluate", "index", "search"]
    index: str | None = None
    wall_s: float
    own_s: float | None = None
    peak_resident_bytes: int
    peak_private_bytes: int
    state: Literal["cold", "warm"] | None = None  # search only: its index's files dropped from the page cache first
    bytes_per_vector: float | None = None  # index only: the written file's size over its vectors
    recall_at_10_vs_exact: float | None = Field(None, alias="recall@10_vs_exact")
    ndcg_at_10: float | None = Field(None, alias="ndcg@10")


class ScaleCorpus(Part):
    document_words: int
    query_words: int
    vocabulary: int
    dim: int


class Vectors(Part):
    rows: int
    queries: int
    dim: int
    derived_from: str


class EncodePoint(Part):
    data: str
    variant: str
    sentences: int
    sentences_per_s: float
    seconds: float
    dtype: str | None = None  # None: recorded before points named theirs (the variant's name says it)
    max_seq_length: int | None = None
    gflops: float | None = None
    share_of_fp32_peak: float | None = None
    stsb_spearman: float | None = None
    peak_gpu_allocated_mib: float | None = None  # GPU runs: torch's peak of the timed encode, weights included
    peak_gpu_reserved_mib: float | None = None


class TrainPoint(Part):
    """One training variant's speed (steady state: the mean time between optimizer steps after the first few), its
    wall time and peak memory, and, after whole epochs, its STSb validation Spearman (x100)."""

    variant: str
    batch_size: int
    max_seq_length: int
    steps_per_s: float
    samples_per_s: float
    repeat: int = 0  # 1: the recipe's second run, after ours
    dtype: str | None = None  # None: recorded before points named theirs (the variant's name says it)
    compiled: bool = False
    steps: int | None = None
    epochs: float | None = None
    train_seconds: float | None = None
    stsb_validation_spearman: float | None = None  # None: a run capped by steps, not scored
    peak_rss_mib: float | None = None
    peak_gpu_allocated_mib: float | None = None  # GPU runs: torch.cuda.max_memory_allocated while training
    peak_gpu_reserved_mib: float | None = None  # ... and max_memory_reserved (the caching allocator's hold)


class MatmulPeaks(Part):
    """A large matrix product's GFLOP/s in each number format: what the encoder's speed is held against."""

    fp32: float
    bf16: float | None = None
    fp16: float | None = None  # GPU runs only


class MatmulSettings(Part):
    """How fp32 matrix multiplies ran: torch.get_float32_matmul_precision() ("highest": full fp32; "high": TF32 where
    the GPU has it) and the CUDA and cuDNN TF32 switches."""

    float32_matmul_precision: str
    cuda_matmul_allow_tf32: bool
    cudnn_allow_tf32: bool | None = None


class PerfModel(Part):
    model: str
    encode: list[EncodePoint]
    train: list[TrainPoint] = []


class CrossEncoderCost(Part):
    pair: list[int]
    score: float
    seconds: float
    pairs: int | None = None


class BiEncoderCost(Part):
    pair: list[int]
    score: float
    seconds: float
    encode_seconds: float | None = None
    search_seconds: float | None = None


class CostPoint(Part):
    n: int
    cross_encoder: CrossEncoderCost
    bi_encoder: BiEncoderCost
    agree: bool
    ratio: float


class Extrapolation(Part):
    n: int
    from_n: int
    extrapolated: bool
    cross_encoder_seconds: float
    bi_encoder_seconds: float
    ratio: float


class CostModel(Part):
    model: str
    cross_encoder: str
    agreement_meaningful: bool
    points: list[CostPoint]
    extrapolation: Extrapolation
