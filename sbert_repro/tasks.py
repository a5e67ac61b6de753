"""The task registry: every evaluation and training set, declared once.

Each task says where it lives on the Hugging Face hub (the dataset ids that sentence-transformers and
mteb use, with mteb's pinned revisions) and under `--data-dir` (the layout of ../shared/data), and what its
score scale is. The loaders (data.py) read these declarations; STS tasks are scored by Spearman (main) and
Pearson, retrieval tasks by nDCG@10 (main) and the rest of metrics.RETRIEVAL_METRICS.
"""

from __future__ import annotations

from dataclasses import dataclass

from sbert_repro.errors import UsageError


@dataclass(frozen=True)
class STSTask:
    """Sentence pairs with a gold similarity score; scored by Spearman of cosine vs gold."""

    name: str
    hub_id: str
    hub_revision: str | None  # None: the hub's main branch (sentence-transformers/stsb pins none)
    splits: tuple[str, ...]
    score_min: float
    score_max: float
    # Loaders multiply hub scores by score_max / hub_score_max so both sources give the same numbers: the one
    # hub copy on another scale, sentence-transformers/stsb, stores gold / 5 (0..1 for the task's 0..5).
    hub_score_max: float
    local_dir: str  # relative to --data-dir; holds <split>.jsonl


@dataclass(frozen=True)
class RetrievalTask:
    """Queries, a corpus and graded relevance judgements (BEIR layout); scored by nDCG@10."""

    name: str
    split: str = "test"
    hub_id: str | None = None
    hub_revision: str | None = None
    local_dir: str | None = None  # relative to --data-dir; corpus.jsonl, queries.jsonl, qrels/<split>.tsv
    # A retrieval task built from an STS task's pairs instead of being downloaded (see data.py).
    derived_from: str | None = None
    min_relevant_score: float | None = None


STS_TASKS: dict[str, STSTask] = {
    task.name: task
    for task in [
        STSTask("sts12", "mteb/sts12-sts", "a0d554a64d88156834ff5ae9920b964011b16384",
                ("test",), 0.0, 5.0, 5.0, "sts/sts12"),
        STSTask("sts13", "mteb/sts13-sts", "7e90230a92c190f1bf69ae9002b8cea547a64cca",
                ("test",), 0.0, 5.0, 5.0, "sts/sts13"),
        STSTask("sts14", "mteb/sts14-sts", "6031580fec1f6af667f0bd2da0a551cf4f0b2375",
                ("test",), 0.0, 5.0, 5.0, "sts/sts14"),
        STSTask("sts15", "mteb/sts15-sts", "ae752c7c21bf194d8b67fd573edf7ae58183cbe3",
                ("test",), 0.0, 5.0, 5.0, "sts/sts15"),
        STSTask("sts16", "mteb/sts16-sts", "4d8694f8f0e0100860b497b999b3dbed754a0513",
                ("test",), 0.0, 5.0, 5.0, "sts/sts16"),
        STSTask("stsb", "sentence-transformers/stsb", None,
                ("train", "validation", "test"), 0.0, 5.0, 1.0, "sts/stsb"),
        # SICK-R is scored 1..5; mteb's copy holds all 9,927 pairs, as the paper's SentEval run did.
        STSTask("sickr", "mteb/sickr-sts", "20a6d6f312dd54037fe07a32d58e5e168867909d",
                ("test",), 1.0, 5.0, 5.0, "sts/sickr"),
    ]
}

RETRIEVAL_TASKS: dict[str, RetrievalTask] = {
    task.name: task
    for task in [
        RetrievalTask("scifact", hub_id="mteb/scifact",
                      hub_revision="d56462d0e63a25450459c4f213e49ffdb866f7f9",
                      local_dir="retrieval/scifact"),
        # STSb test as a retrieval task: a sentence1 with pairs scored >= 4.0 asks for its partners.
        RetrievalTask("stsb-retrieval", derived_from="stsb", min_relevant_score=4.0),
    ]
}

@dataclass(frozen=True)
class NLITask:
    """Premise/hypothesis pairs labelled entailment, neutral or contradiction: training data for SBERT-NLI."""

    name: str
    hub_id: str
    hub_config: str | None
    hub_revision: str | None
    splits: tuple[str, ...]
    local_dir: str  # relative to --data-dir; holds <split>.jsonl of {"premise", "hypothesis", "label"}


NLI_TASKS: dict[str, NLITask] = {
    task.name: task
    for task in [
        # SNLI + MultiNLI ("AllNLI"), as sentence-transformers publishes it for this very training.
        NLITask("allnli", "sentence-transformers/all-nli", "pair-class", None, ("train", "dev", "test"), "nli/allnli"),
        NLITask("snli", "stanfordnlp/snli", None, None, ("train", "validation", "test"), "nli/snli"),
    ]
}
# Label ids as SNLI, MultiNLI and sentence-transformers/all-nli number them.
NLI_LABELS = ("entailment", "neutral", "contradiction")

# The seven columns of the paper's Table 1, in its order; their mean is the "Avg." column.
TABLE1_STS_TASKS: tuple[str, ...] = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")
TRAIN_TASK = "stsb"


def parse_task_list(value: str, registry: dict[str, STSTask] | dict[str, RetrievalTask],
                    option: str) -> tuple[str, ...]:
    """Turn 'a,b' (or 'all', or 'none') into registry names; an unknown name is a UsageError."""
    value = value.strip()
    if value == "all":
        return tuple(registry)
    if value in ("", "none"):
        return ()
    names = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    unknown = [name for name in names if name not in registry]
    if unknown:
        raise UsageError(f"{option}: unknown task {unknown[0]!r}; choose from {', '.join(registry)}, "
                         "'all' or 'none'")
    return names
