"""The run configuration: one frozen object, built from the command line (cli.py) and passed down the pipeline.

Every default is the paper's (Reimers & Gurevych 2019, section 4.2 and the sentence-transformers code it
released) unless its comment says otherwise. The fully resolved config is saved in every run record.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sbert_repro.dimensions import check_dims
from sbert_repro.errors import UsageError
from sbert_repro.tasks import (
    DEFAULT_RETRIEVAL_TASKS,
    NLI_TASKS,
    STS_TASKS,
    TABLE1_STS_TASKS,
    check_retrieval_tasks,
    retrieval_task,
)

POOLING_MODES = ("mean", "cls", "max")
# sts-cosine: the STSb fine-tune (paper Table 2, SBERT-STSb). nli-softmax: the paper's NLI objective
# (SBERT-NLI, Table 1). nli-mnrl: the ranking loss sentence-transformers now recommends for NLI pairs.
# nli-then-stsb: nli-softmax, then sts-cosine from its weights (SBERT-NLI-STSb, Table 2).
# retrieval: (query, relevant document) pairs of a BEIR task's train judgements, MultipleNegativesRankingLoss
# with in-batch and optionally mined hard negatives (training for search; not in the paper).
# sts-cosent, sts-angle: the same STSb pairs and labels as sts-cosine, CoSENTLoss and AnglELoss (losses.py; not in
# the paper). nli-then-stsb's second stage is --stsb-objective (losses.training_stages).
# Each objective's training stages, in order.
OBJECTIVE_STAGES = {"sts-cosine": ("sts-cosine",), "nli-softmax": ("nli-softmax",), "nli-mnrl": ("nli-mnrl",),
                    "nli-then-stsb": ("nli-softmax", "sts-cosine"), "retrieval": ("retrieval",),
                    "sts-cosent": ("sts-cosent",), "sts-angle": ("sts-angle",)}
STS_OBJECTIVES = ("sts-cosine", "sts-cosent", "sts-angle")  # STSb train pairs, gold / 5 labels
OBJECTIVES = tuple(OBJECTIVE_STAGES)
# Where an objective's own defaults differ from the paper's STS recipe (the class defaults below). Retrieval:
# a ranking loss learns from the other documents of its batch, so larger batches help (sentence-transformers'
# retrieval examples use 64 to 256), and documents are longer than STS sentences (SciFact abstracts run past
# 256 tokens: all-MiniLM-L6-v2's own limit). Options given on the command line win.
OBJECTIVE_DEFAULTS: dict[str, dict[str, int]] = {"retrieval": {"batch_size": 64, "max_seq_length": 256, "epochs": 3}}
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
    stsb_objective: str = "sts-cosine"  # nli-then-stsb's second stage: the paper's, or one of STS_OBJECTIVES
    # MatryoshkaLoss around the STS or retrieval loss at these dimensions, largest first; (): the plain loss.
    # The fine-tuned and raw models are then scored at each of them too.
    matryoshka_dims: tuple[int, ...] = ()
    eval_dims: tuple[int, ...] = ()  # evaluate --dims: also score every task with vectors cut to these dimensions
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
    # --objective retrieval (retrieval_training.py): the task whose judgements are trained on, and its split.
    train_task: str = "scifact"
    train_split: str = "train"
    hard_negatives: int = 0  # mined per pair with the raw model through FAISS; 0: in-batch negatives only
    # A candidate scoring above (1 - margin) x the query's least similar relevant document is skipped as a
    # likely false negative (NV-Retriever's TopK-PercPos, 95%).
    negative_margin: float = 0.05
    mini_batch_size: int | None = None  # CachedMultipleNegativesRankingLoss's mini-batch; None: the plain loss
    validation_share: float = 0.1  # train queries held out to pick the best checkpoint (SciFact has no dev split)
    validation_seed: int = 42  # which ones: the same for every --seeds run
    validation_documents: int = 2000  # their search corpus: every judged document plus a sample of the rest
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
                         "--processes": self.encode_processes, "--validation-documents": self.validation_documents}
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
                              "--nprobe": self.nprobe, "--ef-search": self.ef_search,
                              "--mini-batch-size": self.mini_batch_size}.items():
            if value is not None and value <= 0:
                raise UsageError(f"{option} must be a positive integer, got {value}")
        self._check_retrieval_training()
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
        self._check_losses()
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

    def _check_retrieval_training(self) -> None:
        if self.hard_negatives < 0:
            raise UsageError(f"--hard-negatives must be 0 (in-batch negatives only) or a positive integer, "
                             f"got {self.hard_negatives}")
        if not 0.0 <= self.negative_margin < 1.0:
            raise UsageError(f"--negative-margin must be in [0, 1) (a share of the positive's score), "
                             f"got {self.negative_margin}")
        if not 0.0 < self.validation_share < 1.0:
            raise UsageError(f"--validation-share must be in (0, 1), got {self.validation_share}")
        if self.objective != "retrieval":
            for option, value in (("--hard-negatives", self.hard_negatives), ("--mini-batch-size",
                                                                             self.mini_batch_size)):
                if value:
                    raise UsageError(f"{option} is for --objective retrieval, not {self.objective}; leave it out")
        elif not re.fullmatch(r"[A-Za-z0-9._-]+", self.train_split):
            raise UsageError(f"--train-split: {self.train_split!r} is not a split name (the qrels file "
                             "qrels/<split>.tsv)")
        else:
            retrieval_task(self.train_task, option="--train-task")  # a registry name or a BEIR folder

    def _check_losses(self) -> None:
        if self.stsb_objective not in STS_OBJECTIVES:
            raise UsageError(f"--stsb-objective: unknown objective {self.stsb_objective!r}; choose from "
                             f"{', '.join(STS_OBJECTIVES)}")
        if self.stsb_objective != "sts-cosine" and self.objective != "nli-then-stsb":
            raise UsageError(f"--stsb-objective is for --objective nli-then-stsb, not {self.objective}; "
                             f"use --objective {self.stsb_objective}")
        if self.matryoshka_dims and self.objective in ("nli-softmax", "nli-mnrl"):
            raise UsageError(f"--matryoshka-dims is for the STS objectives, nli-then-stsb and retrieval, not "
                             f"{self.objective}; leave it out")
        check_dims(self.matryoshka_dims, "--matryoshka-dims", decreasing=True)
        check_dims(self.eval_dims, "--dims", decreasing=False)

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
