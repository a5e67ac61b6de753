"""Reproduce the SBERT STSb result: raw mean-pooled baseline -> siamese cosine fine-tune -> re-score.

    python scripts/finetune.py                       # bert-base-uncased, data from the Hugging Face hub
    python scripts/finetune.py --model PATH --data-dir ../shared/data --epochs 1   # offline

The steps live in sbert_repro/pipeline.py (`finetune`); `python scripts/finetune.py --help` lists options.
This is the same command as `sbert-repro finetune`.
"""

import sys

from sbert_repro.cli.main import finetune_script

if __name__ == "__main__":
    sys.exit(finetune_script())
