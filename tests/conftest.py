"""Shared fixtures: tiny data and a tiny randomly initialised BERT, written by the tests themselves,
and ../shared/data when it is there (tests that need it skip cleanly when it is not)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Tests never reach the hub: an accidental hub call fails at once instead of retrying for a minute.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

# A suite started in the background of a non-interactive shell (`nohup ... &`, some CI runners) inherits SIGINT
# ignored, and Python then installs no Ctrl-C handler: the tests that send themselves (or their child processes) a
# Ctrl-C through folders.kill_point need Python's own.
signal.signal(signal.SIGINT, signal.default_int_handler)

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def library_logs_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory):
    """Each command's library log (cli/logs.py) under the session's temporary folder, not the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SBERT_REPRO_LOG_DIR", str(tmp_path_factory.mktemp("library-logs")))
        yield


@pytest.fixture(scope="session", autouse=True)
def cpu_without_bf16():
    """--precision auto means fp32 here, as on a CPU without native bf16, so that the tests' exact comparisons
    hold on every machine; the bf16 and int8 paths are tested by name."""
    import torch

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
        patch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
        yield

TOPICS = {
    "animal": ["cat", "dog", "horse", "bird", "cow", "sheep"],
    "food": ["pizza", "bread", "apple", "soup", "cheese", "rice"],
    "vehicle": ["car", "bus", "train", "bike", "truck", "boat"],
    "weather": ["rain", "snow", "sun", "wind", "storm", "fog"],
}
FRAMES = ["the {} is here", "a {} was seen today", "we like the {}", "look at that {}"]
VOCAB_WORDS = sorted({w for words in TOPICS.values() for w in words}
                     | {w for frame in FRAMES for w in frame.replace("{}", "").split()})


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def sentence(rng: random.Random, word: str) -> str:
    return rng.choice(FRAMES).format(word)


def related_words(rng: random.Random, kind: int) -> tuple[str, str]:
    """Two topic words: the same one (kind 0), two of one topic (1), or two of different topics (2)."""
    topics = list(TOPICS)
    topic = rng.choice(topics)
    word = rng.choice(TOPICS[topic])
    if kind == 0:
        return word, word
    if kind == 1:
        return word, rng.choice([w for w in TOPICS[topic] if w != word])
    return word, rng.choice(TOPICS[rng.choice([t for t in topics if t != topic])])


def tiny_pairs(n: int, seed: int, low: float = 0.0) -> list[dict]:
    """Pairs whose gold score says whether two sentences share their topic word (5), topic (3) or nothing."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        word, other = related_words(rng, i % 3)
        score = (5.0, 3.0, max(low, 0.5))[i % 3]
        rows.append({"sentence1": sentence(rng, word), "sentence2": sentence(rng, other), "score": score})
    return rows


def tiny_nli(n: int, seed: int) -> list[dict]:
    """Entailment: the same word in another frame; neutral: the same topic; contradiction: another topic."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        word, other = related_words(rng, i % 3)
        label = ("entailment", "neutral", "contradiction")[i % 3]
        rows.append({"premise": sentence(rng, word), "hypothesis": sentence(rng, other), "label": label})
    return rows


def make_tiny_data(root: Path) -> Path:
    """A --data-dir in ../shared/data's layout, small enough to train and score in seconds."""
    write_jsonl(root / "sts/stsb/train.jsonl", tiny_pairs(96, seed=1))
    write_jsonl(root / "sts/stsb/validation.jsonl", tiny_pairs(48, seed=2))
    write_jsonl(root / "sts/stsb/test.jsonl", tiny_pairs(60, seed=3))
    for offset, task in enumerate(["sts12", "sts13", "sts14", "sts15", "sts16"]):
        write_jsonl(root / f"sts/{task}/test.jsonl", tiny_pairs(30, seed=10 + offset))
    write_jsonl(root / "sts/sickr/test.jsonl", tiny_pairs(30, seed=20, low=1.0))
    write_jsonl(root / "nli/snli/validation.jsonl", tiny_nli(96, seed=30))
    corpus = [{"_id": f"d{i}", "title": topic, "text": f"all about the {word}"}
              for i, (topic, word) in enumerate((t, w) for t, ws in TOPICS.items() for w in ws)]
    write_jsonl(root / "retrieval/scifact/corpus.jsonl", corpus)
    queries = [{"_id": f"q{i}", "text": f"where is the {doc['text'].split()[-1]}"} for i, doc in enumerate(corpus)]
    write_jsonl(root / "retrieval/scifact/queries.jsonl", queries)
    qrels = root / "retrieval/scifact/qrels/test.tsv"
    qrels.parent.mkdir(parents=True, exist_ok=True)
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(0, len(corpus), 2)))
    return root


def make_tiny_bert(folder: Path) -> Path:
    """A 2-layer, 32-wide BERT with random weights and a word-level vocabulary covering the tiny data."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *VOCAB_WORDS]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_data(tmp_path_factory.mktemp("tiny-data"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def regenerated_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of results/ and README.md, regenerated once by make_tables from the committed records: the folder
    holding results/ and README.md, for every test that compares the committed pages with what the records give."""
    from sbert_repro.report import pages

    root = tmp_path_factory.mktemp("regenerated")
    shutil.copytree(REPO_ROOT / "results", root / "results")
    shutil.copy(REPO_ROOT / "README.md", root / "README.md")
    pages.make_tables(root / "results", readme=root / "README.md")
    return root


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """../shared/data (or $SBERT_REPRO_DATA_DIR); the test is skipped when it is absent."""
    path = Path(os.environ.get("SBERT_REPRO_DATA_DIR", REPO_ROOT.parent / "shared" / "data"))
    if not (path / "README.md").is_file():
        pytest.skip(f"shared benchmark data not found at {path} (set SBERT_REPRO_DATA_DIR)")
    return path


def start_slowed_run(loss: str, delay: float, argv: list[str]) -> subprocess.Popen:
    """`sbert-repro ARGV` in a process of its own, every forward pass of the sentence-transformers loss `loss`
    slowed by `delay` seconds, so that a test can kill the run mid-training."""
    driver = f"""
import sys, time
from sentence_transformers.sentence_transformer.losses import {loss}
original = {loss}.forward
def slow_forward(self, *args, **kwargs):
    time.sleep({delay})
    return original(self, *args, **kwargs)
{loss}.forward = slow_forward
from sbert_repro.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
    return subprocess.Popen([sys.executable, "-c", driver, *argv], env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_once_saved(process: subprocess.Popen, checkpoint: Path) -> None:
    """SIGKILL `process` once `checkpoint` is complete (trainer_state.json is its last file; a half-written one is
    test_nothing_lost's case): on a loaded machine writing it takes a while."""
    deadline = time.time() + 120
    while not (checkpoint / "trainer_state.json").is_file():
        assert process.poll() is None, process.stderr.read()
        assert time.time() < deadline, f"the run never saved {checkpoint.name}"
        time.sleep(0.05)
    time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()


def train_directly(model_dir: Path, data_dir: Path, checkpoint_dir: Path, objective: str, train, **options):
    """One training stage of `objective` on `train`, through the Trainer as a fine-tune runs it but without the
    command's baseline, re-score and save: what it recorded, and whether its logged loss fell by a fifth from the
    first quarter of the steps to the last."""
    from sbert_repro.config.training import TrainConfig
    from sbert_repro.data.loaders import load_sts
    from sbert_repro.model.encoder import build_model
    from sbert_repro.train.trainer import train_bi_encoder

    config = TrainConfig(model=str(model_dir), objective=objective, data_dir=data_dir, batch_size=8, lr=3e-3,
                         sts_tasks=("stsb",), retrieval_tasks=(), device="cpu", precision="fp32", **options)
    model = build_model(config.model, "mean", "cpu")
    stage = train_bi_encoder(model, objective, train, load_sts("stsb", "validation", data_dir), config, checkpoint_dir)
    losses = [entry["loss"] for entry in stage["loss_history"]]
    quarter = len(losses) // 4
    fell = quarter > 0 and sum(losses[-quarter:]) / quarter < 0.8 * sum(losses[:quarter]) / quarter
    return stage, fell


# What every record holds of the machine it ran on (runs/record_parts.Environment), for tests that write records of
# their own: a record the schema refuses would never reach the page under test.
TEST_ENVIRONMENT = {"python": "3.11.7", "packages": {"sbert-repro": "0.0.0", "torch": "2.13.0",
                                                     "sentence-transformers": "6.3.0", "faiss-cpu": "1.15.1"},
                    "hardware": {"device": "cpu", "cpu": "Test CPU", "cpu_cores": 2, "torch_threads": 2,
                                 "platform": "Linux"},
                    "git": {"commit": "abc", "dirty": False}}
FINISHED_TIMINGS = {"baseline_eval_s": 60.0, "train_s": 600.0, "finetuned_eval_s": 60.0, "total_s": 720.0}


def with_environment(record: dict, **hardware) -> dict:
    """`record` with TEST_ENVIRONMENT merged under what it holds of its own environment (its hardware updated by
    `hardware`), and, for a finished fine-tune, a training stage and timings where it has none."""
    own = record.get("environment", {})
    environment = {**TEST_ENVIRONMENT, **own,
                   "hardware": {**TEST_ENVIRONMENT["hardware"], **own.get("hardware", {}), **hardware},
                   "git": {**TEST_ENVIRONMENT["git"], **own.get("git", {})}}
    record = {**record, "environment": environment}
    if record.get("kind") == "finetune" and record.get("status", "complete") == "complete":
        record.setdefault("training", {"objective": record.get("config", {}).get("objective", "sts-cosine")})
        record.setdefault("timings", FINISHED_TIMINGS)
        record.setdefault("baseline", {"scores": {}})
        record.setdefault("finetuned", {"scores": {}})
    return record
