"""The paper's published numbers, printed beside ours. Data only; nothing here is computed.

Reimers, N. and Gurevych, I. (2019). Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks.
EMNLP-IJCNLP 2019, arXiv:1908.10084. Spearman rank correlation x100 of cosine similarity vs gold.
"""

from __future__ import annotations

CITATION = ("Reimers & Gurevych (2019), Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks, "
            "arXiv:1908.10084")

# Table 1 (no STS training), row "Avg. BERT embeddings": bert-base-uncased, mean pooling.
AVG_BERT_EMBEDDINGS = {"sts12": 38.78, "sts13": 57.98, "sts14": 57.98, "sts15": 63.15, "sts16": 61.06,
                       "stsb": 46.35, "sickr": 58.40, "sts-avg": 54.81}

# Table 2 (trained on STSb train, 10 seeds): SBERT-STSb-base, mean +- std on STSb test.
SBERT_STSB_BASE = {"stsb": (84.67, 0.19)}


def paper_baseline_to_finetuned(task: str, metric: str) -> str:
    """'46.35 -> 84.67 +- 0.19' where the paper reports the task, else '' (the paper has no number)."""
    if metric != "spearman" or task not in AVG_BERT_EMBEDDINGS:
        return ""
    baseline = f"{AVG_BERT_EMBEDDINGS[task]:.2f}"
    if task in SBERT_STSB_BASE:
        mean, std = SBERT_STSB_BASE[task]
        return f"{baseline} -> {mean:.2f} +- {std:.2f}"
    return f"{baseline} -> n/r"
