"""finetune's own options (training, the objective, training for search), as `sbert-repro finetune` and
scripts/finetune.py share them; their defaults are TrainConfig's and each objective's (config/objectives.py)."""

from __future__ import annotations

import argparse

from sbert_repro.config.objectives import OBJECTIVE_DEFAULTS, OBJECTIVE_REGISTRY, STS_OBJECTIVES, Objective
from sbert_repro.config.training import CONCATENATIONS, REPORT_TO, TrainConfig
from sbert_repro.data.tasks import NLI_TASKS, RETRIEVAL_TASKS


def _objectives_help() -> str:
    """Each objective of the registry with its data and loss (or its stages), so --help lists every one declared."""
    def what(objective: Objective) -> str:
        return ", then ".join(objective.stages) if len(objective.stages) > 1 else \
            f"{objective.train_data}, {objective.loss}"

    return "; ".join(f"{name} ({what(objective)})" for name, objective in OBJECTIVE_REGISTRY.items())


def add_training_options(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    parser.add_argument("--objective", default=d.objective,
                        help=f"what to train on (docs/objectives.md): {_objectives_help()} (default: %(default)s)")
    parser.add_argument("--stsb-objective", default=d.stsb_objective,
                        help=f"nli-then-stsb's second stage: {', '.join(STS_OBJECTIVES)} (default: %(default)s)")
    parser.add_argument("--matryoshka-dims", default=None,
                        help="wrap the STS or retrieval loss in MatryoshkaLoss at these dimensions, largest first, "
                             "e.g. 384,256,128,64, and score before and after at each (default: the plain loss)")
    parser.add_argument("--nli-task", default=d.nli_task,
                        help=f"NLI training set: {', '.join(NLI_TASKS)} (default: %(default)s = SNLI + MultiNLI)")
    parser.add_argument("--nli-split", default=d.nli_split, help="its split (default: %(default)s)")
    parser.add_argument("--nli-epochs", type=int, default=d.nli_epochs,
                        help="passes over the NLI data (default: %(default)s)")
    parser.add_argument("--concat", default=d.concat,
                        help=f"nli-softmax classifier input (paper Table 6): {', '.join(CONCATENATIONS)} "
                             "(default: %(default)s)")
    retrieval = OBJECTIVE_DEFAULTS["retrieval"]
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"passes over STSb train (sts-cosine) or the retrieval pairs (default: {d.epochs}; "
                             f"retrieval: {retrieval['epochs']})")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"training pairs per step; for retrieval, the contrastive batch whose other documents "
                             f"are each query's negatives (default: {d.batch_size}; retrieval: "
                             f"{retrieval['batch_size']})")
    parser.add_argument("--lr", type=float, default=d.lr, help="AdamW peak learning rate (default: %(default)s)")
    parser.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio,
                        help="share of steps with linear warm-up (default: %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=d.weight_decay,
                        help="AdamW weight decay (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed, help="random seed (default: %(default)s)")
    parser.add_argument("--seeds", default=None,
                        help="repeat the fine-tune per seed and report mean +- std: a count N (seeds --seed .. "
                             "--seed+N-1) or a comma-separated list, which replaces --seed (default: just --seed)")
    parser.add_argument("--max-seq-length", type=int, default=None,
                        help=f"tokens per sentence while training (default: {d.max_seq_length}; retrieval: "
                             f"{retrieval['max_seq_length']})")
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
    _add_report_to(parser)
    _add_retrieval_training_options(parser)


def _add_report_to(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--report-to", default=TrainConfig().report_to,
                        help=f"where the Trainer logs the loss and validation: {', '.join(REPORT_TO)} (tensorboard: "
                             "event files in the run folder's tensorboard/<objective>/; default: %(default)s)")


def _add_retrieval_training_options(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    group = parser.add_argument_group("--objective retrieval and cross-encoder-retrieval")
    group.add_argument("--train-task", default=d.train_task,
                       help=f"the task whose judgements are trained on: a name from {', '.join(RETRIEVAL_TASKS)} "
                            "or the path of a folder in BEIR layout (default: %(default)s)")
    group.add_argument("--train-split", default=d.train_split,
                       help="its judgements trained on, qrels/<split>.tsv; must not share queries with the scored "
                            "split (default: %(default)s)")
    group.add_argument("--hard-negatives", type=int, default=None,
                       help="negatives mined per pair by the raw model through a FAISS index, on top of the "
                            "in-batch ones; try 1-5 (default: 0; cross-encoder-retrieval: "
                            f"{OBJECTIVE_DEFAULTS['cross-encoder-retrieval']['hard_negatives']}, each a pair labelled "
                            "0)")
    group.add_argument("--rerank-top-k", type=int, default=None,
                       help="cross-encoder-retrieval: each query's search results the trained re-ranker re-scores "
                            "when the retrieval tasks are scored (default: "
                            f"{OBJECTIVE_DEFAULTS['cross-encoder-retrieval']['rerank_top_k']})")
    group.add_argument("--negative-margin", type=float, default=d.negative_margin,
                       help="skip a candidate scoring above (1 - margin) x the query's relevant document: likely "
                            "a false negative (default: %(default)s)")
    group.add_argument("--mini-batch-size", type=int, default=None,
                       help="compute the loss in mini-batches of this size (CachedMultipleNegativesRankingLoss: "
                            "the same gradients, memory for a mini-batch only); for large --batch-size on a "
                            "laptop (default: the whole batch at once)")
    group.add_argument("--validation-share", type=float, default=d.validation_share,
                       help="share of the train queries held out to pick the best epoch (default: %(default)s)")
    group.add_argument("--validation-seed", type=int, default=d.validation_seed,
                       help="seed of that choice, the same for every --seeds run (default: %(default)s)")
    group.add_argument("--validation-documents", type=int, default=d.validation_documents,
                       help="documents the held-out queries search: every judged one plus a seeded sample "
                            "(default: %(default)s)")
