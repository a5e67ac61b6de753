"""The paper's published numbers, printed beside ours. Data only: nothing here is computed or compared
automatically, and no code that produces a score reads it.

Reimers, N. and Gurevych, I. (2019). Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks.
EMNLP-IJCNLP 2019, arXiv:1908.10084. Spearman rank correlation x100 of cosine similarity vs gold.
"""

from __future__ import annotations

CITATION = ("Reimers & Gurevych (2019), Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks, "
            "arXiv:1908.10084")

# Table 1: no STS training data. Columns STS12, STS13, STS14, STS15, STS16, STSb, SICK-R, and their average.
TABLE1_COLUMNS = ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr", "sts-avg")
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

# Table 2: STSb test, models trained on STSb train (mean +- std over 10 random seeds).
TABLE2 = {
    "BERT-STSb-base (cross-encoder)": (84.30, 0.76),
    "SBERT-STSb-base": (84.67, 0.19),
    "SBERT-NLI-STSb-base": (85.35, 0.17),
}

# Table 6: pooling ablation, STSb validation set, SBERT trained on STSb (the paper's "STSb" column).
TABLE6_POOLING_STSB = {"mean": 87.44, "max": 69.92, "cls": 86.62}

# The paper's model for each of our objectives, trained from bert-base-uncased with mean pooling.
TRAINED_ROW = {"sts-cosine": "SBERT-STSb-base", "nli-then-stsb": "SBERT-NLI-STSb-base", "nli-softmax": "SBERT-NLI-base"}


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
    if trained in TABLE2 and task == "stsb":
        after = "{:.2f} +- {:.2f}".format(*TABLE2[trained])
    elif trained in TABLE1:
        after = f"{TABLE1[trained][column]:.2f}"
    return "" if before == after == "n/r" else f"{before} -> {after}"


# results/geometry.md: published STS Spearman x100 of bert-base-uncased with post-processing (whitening and the
# like), which this repository cannot run (no hub). Row label -> (citation key, values over STS_COLUMNS:
# sts12 .. sickr and their average; None where the source reports none), and citation key -> the full citation
# with its table and setting. Left empty on purpose: filled only from a checked source, never from memory.
POSTPROCESSING_PUBLISHED: dict[str, tuple[str, tuple[float | None, ...]]] = {}
POSTPROCESSING_CITATIONS: dict[str, str] = {}
