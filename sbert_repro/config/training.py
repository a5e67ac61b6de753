"""`sbert-repro finetune`'s configuration (and scripts/finetune.py's): baseline -> fine-tune -> re-score, once per seed.

An option left out is None until the configuration resolves it, once, here: the objective's own default where it has
one (config/objectives.py), else the paper's. So a TrainConfig built in Python is the one the command line builds from
the same options."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from sbert_repro.config.checks import NOT_SETUP, check_dims, check_seed, one_of, positive, split_name
from sbert_repro.config.encoding import ScoringConfig
from sbert_repro.config.objectives import (
    OBJECTIVE_DEFAULTS,
    OBJECTIVE_REGISTRY,
    OBJECTIVE_STAGES,
    OBJECTIVES,
    RETRIEVAL_TRAINING_OBJECTIVES,
    STS_OBJECTIVES,
    get_objective,
)
from sbert_repro.data.tasks import DEFAULT_RETRIEVAL_TASKS, NLI_TASKS, TABLE1_STS_TASKS, retrieval_task
from sbert_repro.errors import UsageError

# Where the Trainer reports its logs (transformers' report_to): none, or an integration, or every one installed.
REPORT_TO = ("none", "tensorboard", "wandb", "mlflow", "all")
# The softmax classifier's input, as the paper's Table 6 ablates it; (u, v, |u-v|) is its choice.
CONCATENATIONS = ("u,v", "|u-v|", "u*v", "|u-v|,u*v", "u,v,u*v", "u,v,|u-v|", "u,v,|u-v|,u*v")
# What an option left out (None) becomes where the objective has no default of its own (OBJECTIVE_DEFAULTS).
PAPER_RECIPE: dict[str, Any] = {
    "epochs": 4,  # the paper trains on STSb for 4 epochs
    "batch_size": 16,  # paper: batch size 16
    "max_seq_length": 128,  # tokens per sentence while training (paper's code: 128)
    "hard_negatives": 0,  # in-batch negatives only
    "rerank_top_k": None,  # only a re-ranker re-scores a search
    "sts_tasks": TABLE1_STS_TASKS,  # the paper's seven STS tasks
    "retrieval_tasks": DEFAULT_RETRIEVAL_TASKS,
}


@dataclass(frozen=True)
class TrainConfig(ScoringConfig):
    """`sbert-repro finetune` (and scripts/finetune.py): baseline -> fine-tune -> re-score, once per seed.

    The fields left None below are resolved as the config is built: the objective's default, else PAPER_RECIPE's.
    `defaulted` names the ones that were (a --max-seq-length left out is cut to the model's own length)."""

    sts_tasks: tuple[str, ...] | None = field(default=None, metadata=NOT_SETUP)
    retrieval_tasks: tuple[str, ...] | None = field(default=None, metadata=NOT_SETUP)
    objective: str = "sts-cosine"
    stsb_objective: str = "sts-cosine"  # nli-then-stsb's second stage: the paper's, or one of STS_OBJECTIVES
    # MatryoshkaLoss around the STS or retrieval loss at these dimensions, largest first; (): the plain loss.
    # The fine-tuned and raw models are then scored at each of them too.
    matryoshka_dims: tuple[int, ...] = ()
    epochs: int | None = None
    nli_epochs: int = 1  # and on NLI for 1
    nli_task: str = "allnli"  # SNLI + MultiNLI, the paper's NLI training data
    nli_split: str = "train"
    concat: str = "u,v,|u-v|"
    batch_size: int | None = None
    lr: float = 2e-5  # paper: Adam(W) with learning rate 2e-5
    warmup_ratio: float = 0.1  # paper: linear learning-rate warm-up over 10% of the training data
    # Not stated in the paper; 0.01 is the default of the sentence-transformers fit() it was run with.
    weight_decay: float = 0.01
    seed: int = field(default=42, metadata=NOT_SETUP)  # the seed of the training run at hand
    # Every seed of the run: the fine-tune is repeated once per seed (paper Table 2: 10 seeds, mean +- std).
    seeds: tuple[int, ...] = field(default=(42,), metadata=NOT_SETUP)
    max_seq_length: int | None = None  # tokens per sentence while training
    max_train_samples: int | None = None  # None: all 5,749 STSb train pairs
    # --objective retrieval (data/retrieval_pairs.py): the task whose judgements are trained on, and its split.
    train_task: str = "scifact"
    train_split: str = "train"
    hard_negatives: int | None = None  # mined per pair with the raw model through FAISS; 0: in-batch only
    rerank_top_k: int | None = None  # cross-encoder-retrieval: each query's search results re-scored
    # A candidate scoring above (1 - margin) x the query's least similar relevant document is skipped as a
    # likely false negative (NV-Retriever's TopK-PercPos, 95%).
    negative_margin: float = 0.05
    # CachedMultipleNegativesRankingLoss's mini-batch; None: the plain loss
    mini_batch_size: int | None = field(default=None, metadata=NOT_SETUP)
    validation_share: float = 0.1  # train queries held out to pick the best checkpoint (SciFact has no dev split)
    validation_seed: int = 42  # which ones: the same for every --seeds run
    validation_documents: int = 2000  # their search corpus: every judged document plus a sample of the rest
    # Not in the paper (random batches): batches of pairs of similar length, in random order, pad less.
    group_by_length: bool = True
    # Checkpoints: at each epoch's end, and every save_steps steps when > 0 (a CPU epoch of bert-base is
    # hours long); the newest keep_checkpoints are kept, plus the best one.
    save_steps: int = 0
    keep_checkpoints: int = field(default=2, metadata=NOT_SETUP)
    resume: bool = field(default=False, metadata=NOT_SETUP)  # continue the run in output_dir from its latest checkpoint
    # the Trainer's logging integration (REPORT_TO); none: the record and the console only
    report_to: str = field(default="none", metadata=NOT_SETUP)
    defaulted: tuple[str, ...] = field(default=(), compare=False, repr=False, metadata=NOT_SETUP)

    def __post_init__(self) -> None:
        self._resolve_defaults()
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
        for value in self.seeds:
            check_seed("--seed" if len(self.seeds) == 1 else "--seeds", value)
        check_seed("--validation-seed", self.validation_seed)
        if self.seed not in self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UsageError(f"--seeds must list distinct seeds including --seed; got {list(self.seeds)}")
        one_of("--objective", self.objective, OBJECTIVES, "objective")
        one_of("--report-to", self.report_to, REPORT_TO, "integration")
        one_of("--nli-task", self.nli_task, NLI_TASKS, "task")
        one_of("--concat", self.concat, CONCATENATIONS, "concatenation")
        if self.precision == "int8":
            raise UsageError("--precision int8: int8 is for encoding only (evaluate, index); "
                             "fine-tune in fp32, bf16 or fp16, or leave it at auto")
        self._check_retrieval_training()
        self._check_losses()
        if not self.sts_tasks and not self.retrieval_tasks:
            raise UsageError("--sts-tasks none --retrieval-tasks none: nothing to score before and after training; "
                             "name at least one task")

    def _resolve_defaults(self) -> None:
        """Each option left out: the objective's own default, else the paper's; a re-ranker is scored on its own
        training task's search."""
        own, filled = OBJECTIVE_DEFAULTS.get(self.objective, {}), []
        for key, paper in PAPER_RECIPE.items():
            if getattr(self, key) is None:
                value = own.get(key, paper)
                if key == "retrieval_tasks" and get_objective(self.objective).scoring == "reranked-search":
                    value = (self.train_task,)
                object.__setattr__(self, key, value)
                filled.append(key)
        object.__setattr__(self, "defaulted", tuple(sorted({*self.defaulted, *filled})))

    def to_dict(self) -> dict[str, Any]:
        """As EncoderConfig's, less `defaulted`: the record holds the resolved values."""
        return {key: value for key, value in super().to_dict().items() if key != "defaulted"}

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
        if get_objective(self.objective).scoring == "pair-scores" and self.retrieval_tasks:
            raise UsageError(f"--retrieval-tasks with --objective {self.objective}: a cross-encoder scores pairs and "
                             "cannot index a corpus, so it is scored on the STS tasks only; leave --retrieval-tasks "
                             "out (re-rank a search with `evaluate --rerank`)")
        if get_objective(self.objective).scoring == "reranked-search":
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
            default = get_objective(self.objective).defaults["hard_negatives"]
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
        if self.matryoshka_dims and not any(OBJECTIVE_REGISTRY[stage].matryoshka for stage in
                                            OBJECTIVE_STAGES[self.objective]):
            raise UsageError(f"--matryoshka-dims is for the STS objectives, nli-then-stsb and retrieval, not "
                             f"{self.objective}; leave it out")
        check_dims(self.matryoshka_dims, "--matryoshka-dims", decreasing=True)
        if self.matryoshka_dims and self.postprocess:
            raise UsageError("--matryoshka-dims with --postprocess: the baseline is scored either cut to fewer "
                             "dimensions or post-processed; give one of the two")
