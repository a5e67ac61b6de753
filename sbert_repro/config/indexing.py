"""The `index` and `search` commands' configurations, IndexConfig and SearchConfig: frozen, each field checked
where it is declared, as config/encoding.py's are."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sbert_repro.config.checks import EXACT_INDEX, check_device, check_index_options, check_seed, positive
from sbert_repro.config.encoding import EncoderConfig, check_prompts
from sbert_repro.errors import UsageError


@dataclass(frozen=True)
class IndexConfig(EncoderConfig):
    """`sbert-repro index`: encode a corpus to disk and save a searchable FAISS index."""

    corpus: Path | None = None  # required: a JSON lines corpus, or a BEIR folder
    index: str = EXACT_INDEX  # a faiss index_factory string; Flat is exact search
    nprobe: int | None = None  # IVF lists visited per query (faiss: 1)
    ef_search: int | None = None  # HNSW candidates kept per query (faiss: 16)
    # vectors sampled to train IVF/PQ, drawn with `seed`; None: 64 a list (search/faiss_index.training_size)
    index_train_size: int | None = None
    seed: int = 42
    eval_batch_size: int = 64  # encoding batch (the name evaluate gives it; finetune's batch_size is training's)
    eval_max_seq_length: int | None = None  # tokens per document; None: the model's own limit
    chunk_size: int = 8192  # rows encoded between two progress records
    processes: int = 1  # CPU processes encoding side by side (several GPUs: one each)
    resume: bool = False  # continue an interrupted encode (or rebuild the index without encoding again)
    # A transform `evaluate --postprocess` saved (postprocess/<task>.npz): applied to the documents before indexing
    # and kept in the index folder, so that `search` applies it to the queries too. None: the vectors as encoded.
    postprocess: Path | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for option, value in {"--train-size": self.index_train_size, "--eval-batch-size": self.eval_batch_size,
                              "--eval-max-seq-length": self.eval_max_seq_length, "--chunk-size": self.chunk_size,
                              "--processes": self.processes}.items():
            positive(option, value)
        check_index_options(self.index, self.nprobe, self.ef_search)
        check_seed("--seed", self.seed)
        if self.resume and self.overwrite:
            raise UsageError("--resume and --overwrite contradict each other; pass one")
        if self.precision == "int8" and self.processes > 1:
            raise UsageError(f"--precision int8 with --processes {self.processes}: a quantized model cannot "
                             "be sent to other processes; encode in one process, or use --precision bf16")


@dataclass(frozen=True)
class SearchConfig:
    """`sbert-repro search`: queries against an index folder made by `sbert-repro index`."""

    index_dir: Path
    queries: tuple[str, ...] = ()  # from the command line; else queries_file, else stdin
    queries_file: Path | None = None  # one query per line, or BEIR queries JSONL; "-" is stdin
    top_k: int = 10
    nprobe: int | None = None  # None: as the index was built
    ef_search: int | None = None
    device: str = "auto"
    json: bool = False  # one JSON object per query instead of a table
    run_file: Path | None = None  # the hits also as a TREC run file
    trust_remote_code: bool = False  # needed again if the index's model ships its own code
    model: str | None = None  # None: the index's own; else a copy of it (same fingerprint), e.g. moved elsewhere
    # The queries' prompt, as text or by a name the model defines; None: the one the index was built with (index
    # --query-prompt), else the model's own "query" prompt.
    query_prompt: str | None = None
    query_prompt_name: str | None = None

    def __post_init__(self) -> None:
        if self.queries and self.queries_file is not None:
            raise UsageError(f"queries on the command line and --queries-file {self.queries_file}: give one of them")
        check_prompts(self.query_prompt, self.query_prompt_name, "query")
        for option, value in {"--top-k": self.top_k, "--nprobe": self.nprobe, "--ef-search": self.ef_search}.items():
            positive(option, value)
        check_device(self.device)
