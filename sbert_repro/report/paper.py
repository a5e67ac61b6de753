"""The paper's published numbers, printed beside ours. Data only: nothing here is computed or compared
automatically, and no code that produces a score reads it.

Reimers, N. and Gurevych, I. (2019). Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks.
EMNLP-IJCNLP 2019, arXiv:1908.10084. Spearman rank correlation x100 of cosine similarity vs gold.
"""

from __future__ import annotations

from typing import NamedTuple

from sbert_repro.data.tasks import STS_AVERAGE, TABLE1_STS_TASKS, TRAIN_TASK

CITATION = ("Reimers & Gurevych (2019), Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks, "
            "arXiv:1908.10084")

# Table 1: no STS training data. Columns STS12, STS13, STS14, STS15, STS16, STSb, SICK-R (the registry's
# TABLE1_STS_TASKS, in the paper's order), and their average.
TABLE1_COLUMNS = (*TABLE1_STS_TASKS, STS_AVERAGE)
TABLE1 = {
    "Avg. GloVe embeddings": (55.14, 70.66, 59.73, 68.25, 63.66, 58.02, 53.76, 61.32),
    "Avg. BERT embeddings": (38.78, 57.98, 57.98, 63.15, 61.06, 46.35, 58.40, 54.81),
    "BERT CLS-vector": (20.16, 30.01, 20.09, 36.88, 38.08, 16.50, 42.63, 29.19),
    "InferSent - Glove": (52.86, 66.75, 62.15, 72.77, 66.87, 68.03, 65.65, 65.01),
    "Universal Sentence Encoder": (64.49, 67.80, 64.61, 76.83, 73.18, 74.92, 76.69, 71.22),
    "SBERT-NLI-base": (70.97, 76.53, 73.19, 79.09, 74.30, 77.03, 72.91, 74.89),
    "SBERT-NLI-large": (72.27, 78.46, 74.90, 80.99, 76.25, 79.23, 73.75, 76.55),
    "SRoBERTa-NLI-base": (71.54, 72.49, 70.80, 78.74, 73.69, 77.77, 74.46, 74.21),
    "SRoBERTa-NLI-large": (74.53, 77.00, 73.18, 81.85, 76.82, 79.10, 74.29, 76.68),
}
# The rows our bert-base-uncased baselines reproduce, by pooling mode.
TABLE1_ROW_FOR_POOLING = {"mean": "Avg. BERT embeddings", "cls": "BERT CLS-vector"}

# What `--pooling mean` on bert-base-uncased gives with the Hugging Face weights and sentence-transformers' mean over
# the last layer: the paper's Avg. BERT row came from bert-as-service, another pooling set-up (the author's answer in
# the same thread). Published by a user, not by the paper; TABLE1's columns but the average (not reported there).
EXPECTED_MEAN_POOLING_SOURCE = "sentence-transformers issue #621"
EXPECTED_MEAN_POOLING_URL = "https://github.com/huggingface/sentence-transformers/issues/621"
EXPECTED_MEAN_POOLING = (30.87, 59.89, 47.73, 60.29, 63.73, 47.29, 58.22)

# Table 2: STSb test, models trained on STSb train (mean +- std over 10 random seeds).
TABLE2 = {
    "BERT-STSb-base (cross-encoder)": (84.30, 0.76),
    "SBERT-STSb-base": (84.67, 0.19),
    "SBERT-NLI-STSb-base": (85.35, 0.17),
}
TABLE2_SEEDS = 10  # the random seeds each of Table 2's mean +- std is over

# Table 6: pooling ablation, STSb validation set, SBERT trained on STSb (the paper's "STSb" column).
TABLE6_POOLING_STSB = {"mean": 87.44, "max": 69.92, "cls": 86.62}

# The paper's model for each of our objectives, trained from bert-base-uncased with mean pooling.
TRAINED_ROW = {"sts-cosine": "SBERT-STSb-base", "nli-then-stsb": "SBERT-NLI-STSb-base", "nli-softmax": "SBERT-NLI-base",
               "cross-encoder": "BERT-STSb-base (cross-encoder)"}

# Section 1, the cost argument: finding the most similar pair among n = 10,000 sentences, BERT as a cross-encoder
# against SBERT's embeddings and cosine similarity, on a V100 GPU. Quoted as the paper words them (estimates, not
# a table): "about 50 million inference computations (~65 hours)" and "about 5 seconds".
COST_CITATION = "Reimers & Gurevych (2019), section 1"
COST_SENTENCES = 10_000
COST_HARDWARE = "a V100 GPU"


class Estimate(NamedTuple):
    route: str
    quote: str  # as the paper words it
    seconds: float


COST = (Estimate("BERT cross-encoder", "about 50 million inference computations (~65 hours)", 65 * 3600),
        Estimate("SBERT", "about 5 seconds", 5))  # the cross-encoder's, then the bi-encoder's


def paper_column(task: str, metric: str, pooling: str, objective: str) -> str:
    """The paper's bert-base-uncased Spearman for this task, pooling and objective, as 'before -> after'
    ('n/r' where the paper reports no number); '' where it reports neither."""
    if metric != "spearman" or task not in TABLE1_COLUMNS:
        return ""
    column = TABLE1_COLUMNS.index(task)
    before_row = TABLE1_ROW_FOR_POOLING.get(pooling)
    before = f"{TABLE1[before_row][column]:.2f}" if before_row else "n/r"
    after = "n/r"
    trained = TRAINED_ROW.get(objective) if pooling == "mean" else None
    if trained in TABLE2 and task == TRAIN_TASK:
        after = "{:.2f} +- {:.2f}".format(*TABLE2[trained])
    elif trained in TABLE1:
        after = f"{TABLE1[trained][column]:.2f}"
    return "" if before == after == "n/r" else f"{before} -> {after}"


# BEIR's published BM25 (Elasticsearch; Thakur et al. 2021, Table 2), nDCG@10 x100, by our task names: the
# reference row of every BEIR table, beside ours (bm25s).
BEIR_BM25 = {"scifact": 66.5, "nfcorpus": 32.5, "arguana": 31.5, "scidocs": 15.8, "fiqa": 23.6, "trec-covid": 65.6,
             "touche2020": 36.7, "quora": 78.9}


# results/geometry.md: published STS Spearman x100 of bert-base-uncased with post-processing (whitening and the
# like), which this repository cannot run (no hub). Row label -> (citation key, values over STS_COLUMNS:
# sts12 .. sickr and their average; None where the source reports none), and citation key -> the full citation
# with its table and setting. Filled only from a checked source (two transcriptions of each paper that agree digit for
# digit; SimCSE's baseline rows also against the authors' own v1 PDF), never from memory.
# The settings differ from ours and between the papers: both pool the average of the first and last layers, not
# the last layer's mean; Su et al. fit "target" whitening on all of a task's splits (we fit on its test sentences)
# and average subsets by size; SimCSE concatenates each year's subsets ("all"), and its "first-last avg." averaged
# the embedding layer with the last (its README says so). Su et al. print SICK-R of whitening with one decimal.
POSTPROCESSING_PUBLISHED: dict[str, tuple[str, tuple[float | None, ...]]] = {
    "BERT-base, first-last avg.": ("su2021", (57.86, 61.97, 62.49, 70.96, 69.76, 59.04, 63.75, None)),
    "BERT-base, first-last avg. + whitening fitted on each task": (
        "su2021", (63.62, 73.02, 69.23, 74.52, 72.15, 71.34, 60.6, None)),
    "BERT-base, first-last avg. + whitening-256 fitted on each task": (
        "su2021", (63.89, 73.76, 69.08, 74.59, 74.40, 71.43, 62.2, None)),
    "BERT-base, first-last avg. + whitening fitted on NLI": (
        "su2021", (61.69, 65.70, 66.02, 75.11, 73.11, 68.19, 63.6, None)),
    "BERT-base (first-last avg.), SimCSE's evaluation": (
        "gao2021-t5", (39.70, 59.38, 49.67, 66.03, 66.19, 53.87, 62.06, 56.70)),
    "BERT-base-whitening fitted on each task, SimCSE's evaluation": (
        "gao2021-c1", (42.88, 77.77, 66.28, 63.60, 67.58, 71.34, 60.40, 64.26)),
    "BERT-base-whitening fitted on NLI, SimCSE's evaluation": (
        "gao2021-t5", (57.83, 66.90, 60.90, 75.08, 71.31, 68.24, 63.73, 66.28)),
}
POSTPROCESSING_CITATIONS: dict[str, str] = {
    "su2021": "Su et al. (2021), Whitening Sentence Representations, arXiv:2103.15316, Table 1 (their implementation)",
    "gao2021-t5": "Gao et al. (2021), SimCSE, arXiv:2104.08821, Table 5 (\"all\")",
    "gao2021-c1": "Gao et al. (2021), SimCSE, arXiv:2104.08821, Table C.1 (\"all\", target)",
}
