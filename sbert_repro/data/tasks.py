"""The task registry: every evaluation and training set, declared once.

Each task says where it lives on the Hugging Face hub (the dataset ids that sentence-transformers and
mteb use, with mteb's pinned revisions) and under `--data-dir` (the layout of ../shared/data), and what its
score scale is. The loaders (data/loaders.py) read these declarations; STS tasks are scored by Spearman (main) and
Pearson, retrieval tasks by nDCG@10 (main) and the rest of metrics.RETRIEVAL_METRICS.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sbert_repro.errors import UsageError


@dataclass(frozen=True)
class STSTask:
    """Sentence pairs with a gold similarity score; scored by Spearman of cosine vs gold."""

    name: str
    hub_id: str
    hub_revision: str | None  # None: the hub's main branch
    splits: tuple[str, ...]
    score_min: float
    score_max: float
    # Loaders multiply hub scores by score_max / hub_score_max so both sources give the same numbers: the one
    # hub copy on another scale, sentence-transformers/stsb, stores gold / 5 (0..1 for the task's 0..5).
    hub_score_max: float
    local_dir: str  # relative to --data-dir; holds <split>.jsonl
    mteb_name: str  # for `evaluate --mteb`
    mteb_revision: str | None = None  # mteb's own copy's, where the hub copy read is another (None: hub_revision)


@dataclass(frozen=True)
class RetrievalTask:
    """Queries, a corpus and graded relevance judgements (BEIR layout); scored by nDCG@10."""

    name: str
    split: str = "test"  # the judgements scored (mteb's eval split); --retrieval-split picks another
    hub_id: str | None = None
    hub_revision: str | None = None
    local_dir: str | None = None  # relative to --data-dir; corpus.jsonl, queries.jsonl, qrels/<split>.tsv
    folder: Path | None = None  # a BEIR folder named by its path on the command line (read as is)
    mteb_name: str | None = None  # for `evaluate --mteb`
    # mteb's ignore_identical_ids: the task's queries are documents of its corpus (ArguAna, Quora) or share its
    # ids (FiQA2018). Declared for readers: we drop a query's own document from its results for every task, as
    # BEIR's evaluation does by default, and on these tasks that changes the scores.
    queries_from_corpus: bool = False
    # A retrieval task built from an STS task's pairs instead of being downloaded (see data/loaders.py).
    derived_from: str | None = None
    min_relevant_score: float | None = None


STS_TASKS: dict[str, STSTask] = {
    task.name: task
    for task in [
        STSTask("sts12", "mteb/sts12-sts", "a0d554a64d88156834ff5ae9920b964011b16384",
                ("test",), 0.0, 5.0, 5.0, "sts/sts12", "STS12"),
        STSTask("sts13", "mteb/sts13-sts", "7e90230a92c190f1bf69ae9002b8cea547a64cca",
                ("test",), 0.0, 5.0, 5.0, "sts/sts13", "STS13"),
        STSTask("sts14", "mteb/sts14-sts", "6031580fec1f6af667f0bd2da0a551cf4f0b2375",
                ("test",), 0.0, 5.0, 5.0, "sts/sts14", "STS14"),
        STSTask("sts15", "mteb/sts15-sts", "ae752c7c21bf194d8b67fd573edf7ae58183cbe3",
                ("test",), 0.0, 5.0, 5.0, "sts/sts15", "STS15"),
        STSTask("sts16", "mteb/sts16-sts", "4d8694f8f0e0100860b497b999b3dbed754a0513",
                ("test",), 0.0, 5.0, 5.0, "sts/sts16", "STS16"),
        # mteb scores STSb from mteb/stsbenchmark-sts, the same 1,379 test pairs on the 0..5 scale
        STSTask("stsb", "sentence-transformers/stsb", "ab7a5ac0e35aa22088bdcf23e7fd99b220e53308",
                ("train", "validation", "test"), 0.0, 5.0, 1.0, "sts/stsb", "STSBenchmark",
                mteb_revision="b0fddb56ed78048fa8b90373c8a3cfc37b684831"),
        # SICK-R is scored 1..5; mteb's copy holds all 9,927 pairs, as the paper's SentEval run did.
        STSTask("sickr", "mteb/sickr-sts", "20a6d6f312dd54037fe07a32d58e5e168867909d",
                ("test",), 1.0, 5.0, 5.0, "sts/sickr", "SICK-R"),
    ]
}


def _beir(name: str, hub_id: str, revision: str, mteb_name: str, queries_from_corpus: bool = False) -> RetrievalTask:
    """One of MTEB's English BEIR tasks, as mteb declares it (dataset, pinned revision, eval split "test",
    ignore_identical_ids); its local copy lives under retrieval/<name>/ of --data-dir."""
    return RetrievalTask(name, hub_id=hub_id, hub_revision=revision, local_dir=f"retrieval/{name}",
                         mteb_name=mteb_name, queries_from_corpus=queries_from_corpus)


RETRIEVAL_TASKS: dict[str, RetrievalTask] = {
    task.name: task
    for task in [
        _beir("scifact", "mteb/scifact", "d56462d0e63a25450459c4f213e49ffdb866f7f9", "SciFact"),
        # STSb test as a retrieval task: a sentence1 with pairs scored >= 4.0 asks for its partners.
        RetrievalTask("stsb-retrieval", derived_from="stsb", min_relevant_score=4.0),
        # MTEB's other English BEIR tasks with corpora under 1M documents (mteb 2.20's task metadata; documents
        # in its descriptive statistics). CQADupStack's twelve forums are left out.
        _beir("nfcorpus", "mteb/nfcorpus", "ec0fa4fe99da2ff19ca1214b7966684033a58814", "NFCorpus"),  # 3,633
        _beir("arguana", "mteb/arguana", "c22ab2a51041ffd869aaddef7af8d8215647e41a", "ArguAna",
              queries_from_corpus=True),  # 8,674
        _beir("scidocs", "mteb/scidocs", "f8c2fcf00f625baaa80f62ec5bd9e1fff3b8ae88", "SCIDOCS"),  # 25,657
        _beir("fiqa", "mteb/fiqa", "27a168819829fe9bcd655c2df245fb19452e8e06", "FiQA2018",
              queries_from_corpus=True),  # 57,638
        _beir("trec-covid", "mteb/trec-covid", "bb9466bac8153a0349341eb1b22e06409e78ef4e", "TRECCOVID"),  # 171,332
        _beir("touche2020", "mteb/touche2020", "a34f9a33db75fa0cbb21bb5cfc3dae8dc8bec93f", "Touche2020"),  # 382,545
        _beir("quora", "mteb/quora", "e4e08e0b7dbe3c8700f0daef558ff32256715259", "QuoraRetrieval",
              queries_from_corpus=True),  # 522,931
    ]
}
# What a run scores unless --retrieval-tasks says otherwise: the registry's other tasks are large downloads.
DEFAULT_RETRIEVAL_TASKS: tuple[str, ...] = ("scifact", "stsb-retrieval")


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
        NLITask("allnli", "sentence-transformers/all-nli", "pair-class", "d482672c8e74ce18da116f430137434ba2e52fab",
                ("train", "dev", "test"), "nli/allnli"),
        NLITask("snli", "stanfordnlp/snli", None, "cdb5c3d5eed6ead6e5a341c8e56e669bb666725b",
                ("train", "validation", "test"), "nli/snli"),
    ]
}
# Label ids as SNLI, MultiNLI and sentence-transformers/all-nli number them.
NLI_LABELS = ("entailment", "neutral", "contradiction")

# The seven columns of the paper's Table 1, in its order; their mean is the "Avg." column.
TABLE1_STS_TASKS: tuple[str, ...] = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")
TRAIN_TASK = "stsb"
# The mean over TABLE1_STS_TASKS, scored and reported as a task of its own ("sts-avg/spearman").
STS_AVERAGE = "sts-avg"
# The retrieval task the results pages lead with: the headline's search column.
HEADLINE_RETRIEVAL_TASK = "scifact"


def parse_task_list(value: str, registry: dict[str, STSTask] | dict[str, RetrievalTask],
                    option: str) -> tuple[str, ...]:
    """Turn 'a,b' (or 'all', or 'none') into registry names; an unknown name is a UsageError."""
    value = value.strip()
    if value == "all":
        return tuple(registry)
    if value in ("", "none"):
        return ()
    names = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    for name in names:
        if name not in registry:
            raise UsageError(f"{option}: unknown task {name!r}; choose from {', '.join(registry)}, 'all' or 'none'")
    return names


def parse_retrieval_tasks(value: str) -> tuple[str, ...]:
    """--retrieval-tasks: registry names ('all': every one) or paths of folders in BEIR layout, checked."""
    value = value.strip()
    specs = (tuple(RETRIEVAL_TASKS) if value == "all" else () if value in ("", "none")
             else tuple(dict.fromkeys(spec.strip() for spec in value.split(",") if spec.strip())))
    check_retrieval_tasks(specs)
    return specs


def check_retrieval_tasks(specs: tuple[str, ...]) -> None:
    """Every spec names a task, and no two tasks go by one name (a folder is named by its last part)."""
    names: dict[str, str] = {}
    for spec in specs:
        name = retrieval_task(spec).name
        if spec not in RETRIEVAL_TASKS and (name in STS_TASKS or name in RETRIEVAL_TASKS or name == "sts-avg"):
            raise UsageError(f"--retrieval-tasks {spec}: its folder's name {name!r} is a task name of ours, and "
                             "scores are reported by name; rename the folder")
        if name in names:
            raise UsageError(f"--retrieval-tasks: {names[name]!r} and {spec!r} would both be reported as {name!r}; "
                             "give one of them, or rename the folder")
        names[name] = spec


def retrieval_task(spec: str, option: str = "--retrieval-tasks") -> RetrievalTask:
    """A registry task by name, or a folder in BEIR layout by path (named by the folder)."""
    if spec in RETRIEVAL_TASKS:
        return RETRIEVAL_TASKS[spec]
    folder = Path(spec).expanduser()
    if not folder.exists() and "/" not in spec and os.sep not in spec:
        choices = ", ".join(RETRIEVAL_TASKS) + (", 'all' or 'none'" if option == "--retrieval-tasks" else "")
        raise UsageError(f"{option}: unknown task {spec!r}; choose from {choices}, or give the path of a folder in "
                         "BEIR layout")
    missing = [part for part in ("corpus.jsonl", "queries.jsonl", "qrels/") if not (folder / part).exists()]
    if not folder.is_dir() or missing:
        raise UsageError(f"{option} {spec}: not a folder in BEIR layout (missing "
                         f"{', '.join(missing) if folder.is_dir() else 'the folder itself'}); it needs "
                         "corpus.jsonl, queries.jsonl and qrels/<split>.tsv")
    return RetrievalTask(folder.resolve().name, folder=folder)
