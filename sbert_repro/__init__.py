"""sbert-repro: a reproduction of Sentence-BERT (Reimers & Gurevych, 2019, arXiv 1908.10084).

The pipeline reads top to bottom as its modules do:
config -> tasks -> data -> model -> train -> evaluate (metrics) -> records -> report,
with `pipeline` running the stages in order and `cli` as the command line.
"""

__version__ = "0.1.0"
