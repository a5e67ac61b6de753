"""The hub loaders on local replicas of the hub's datasets, in their exact layout and column types (a dataset
card whose `configs` name the data files and whose `dataset_info` gives the dtypes), loaded through the same
`datasets.load_dataset` call the project makes for the hub: mteb's BEIR copies (configs corpus, queries and
default, grades stored as float64), sentence-transformers/stsb (gold / 5 as a float) and
sentence-transformers/all-nli's pair-class config (integer labels)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import write_jsonl

from sbert_repro.data import hub, sources, tasks
from sbert_repro.data import loaders as data
from sbert_repro.errors import UsageError


@pytest.fixture(autouse=True)
def fresh_datasets_cache(tmp_path, monkeypatch):
    """Each test's own cache: `datasets` keys a local folder's cache by its name and card, not its path."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")


def _features(columns: dict[str, str]) -> str:
    return "".join(f"  - name: {name}\n    dtype: {dtype}\n" for name, dtype in columns.items())


def write_card(folder: Path, configs: dict[str, dict[str, str]], features: dict[str, dict[str, str]]) -> Path:
    """README.md as the hub's dataset cards have it: configs -> {split: file}, and each config's features."""
    lines = ["---", "configs:"]
    for config, splits in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {path}" for split, path in splits.items()]
    lines.append("dataset_info:")
    for config, columns in features.items():
        lines += [f"- config_name: {config}", "  features:", _features(columns).rstrip("\n")]
    (folder / "README.md").write_text("\n".join(lines) + "\n---\n")
    return folder


CORPUS = [{"_id": "d1", "title": "Cats", "text": "cats purr"}, {"_id": "d2", "title": "", "text": "dogs bark"},
          {"_id": "q2", "title": "", "text": "what barks"}]
QUERIES = [{"_id": "q1", "text": "what purrs"}, {"_id": "q2", "text": "what barks"}, {"_id": "q3", "text": "x"}]
# As mteb's copies hold them: grades 1.0 (float64), and one judgement of a document the corpus lacks.
QRELS = [{"query-id": "q1", "corpus-id": "d1", "score": 1}, {"query-id": "q1", "corpus-id": "d404", "score": 2},
         {"query-id": "q2", "corpus-id": "d2", "score": 1}]


def mteb_beir_replica(folder: Path, qrels: list[dict] = QRELS) -> Path:
    write_jsonl(folder / "corpus.jsonl", CORPUS)
    write_jsonl(folder / "queries.jsonl", QUERIES)
    write_jsonl(folder / "qrels/test.jsonl", qrels)
    write_jsonl(folder / "qrels/train.jsonl", [{"query-id": "q3", "corpus-id": "d2", "score": 1}])
    return write_card(
        folder,
        {"default": {"train": "qrels/train.jsonl", "test": "qrels/test.jsonl"}, "corpus": {"corpus": "corpus.jsonl"},
         "queries": {"queries": "queries.jsonl"}},
        {"default": {"query-id": "string", "corpus-id": "string", "score": "float64"},
         "corpus": {"_id": "string", "title": "string", "text": "string"},
         "queries": {"_id": "string", "text": "string"}})


@pytest.fixture
def scifact_from(monkeypatch):
    """Point the registry's scifact at a replica folder: the hub loader then reads it as it reads mteb/scifact."""
    def point(folder: Path) -> None:
        task = tasks.RETRIEVAL_TASKS["scifact"]
        monkeypatch.setitem(tasks.RETRIEVAL_TASKS, "scifact", dataclasses.replace(task, hub_id=str(folder)))
    return point


def test_the_replica_has_the_hub_column_types(tmp_path):
    from datasets import load_dataset

    qrels = load_dataset(str(mteb_beir_replica(tmp_path / "scifact")), "default", split="test")
    assert qrels.features["score"].dtype == "float64" and qrels[0]["score"] == 1.0


def test_mteb_beir_layout_with_float_grades_loads_like_the_beir_folder(tmp_path, scifact_from):
    replica = mteb_beir_replica(tmp_path / "scifact")
    scifact_from(replica)
    from_hub = data.load_retrieval("scifact", None)
    # the same data as a BEIR folder (qrels/test.tsv), read by the file loader
    folder = tmp_path / "beir" / "scifact"
    write_jsonl(folder / "corpus.jsonl", CORPUS)
    write_jsonl(folder / "queries.jsonl", QUERIES)
    (folder / "qrels").mkdir()
    (folder / "qrels/test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{row['query-id']}\t{row['corpus-id']}\t{row['score']}\n" for row in QRELS))
    from_files = data.load_retrieval(str(folder), None)
    assert from_hub.qrels == from_files.qrels == {"q1": {"d1": 1, "d404": 2}, "q2": {"d2": 1}}
    assert all(type(grade) is int for judged in from_hub.qrels.values() for grade in judged.values())
    assert from_hub.corpus == from_files.corpus and from_hub.queries == from_files.queries
    assert from_hub.checks == from_files.checks == {"judgements_without_document": 1, "judgements_without_query": 0,
                                                     "identical_ids_ignored": 1, "empty_documents": 0}
    assert from_hub.source == f"hf:{replica}:test"  # a local folder has no commit to name
    train = data.load_retrieval("scifact", None, split="train")
    assert train.qrels == {"q3": {"d2": 1}}


def test_a_non_integral_hub_grade_is_one_line_naming_the_dataset_and_row(tmp_path, scifact_from):
    qrels = [*QRELS, {"query-id": "q2", "corpus-id": "d1", "score": 0.5}]
    scifact_from(mteb_beir_replica(tmp_path / "scifact", qrels))
    with pytest.raises(UsageError, match=r"scifact \(test\) row 3: score 0.5 is not an integer relevance"):
        data.load_retrieval("scifact", None)


def one_config_replica(folder: Path, config: str, splits: tuple[str, ...], rows: list[dict],
                       columns: dict[str, str]) -> Path:
    """A dataset of one config, the same rows in each split, as <config>/<split>.jsonl."""
    for split in splits:
        write_jsonl(folder / f"{config}/{split}.jsonl", rows)
    return write_card(folder, {config: {split: f"{config}/{split}.jsonl" for split in splits}}, {config: columns})


def test_stsb_as_sentence_transformers_publishes_it(tmp_path, monkeypatch):
    rows = [{"sentence1": "a cat", "sentence2": "a cat sits", "score": 0.84},
            {"sentence1": "a dog", "sentence2": "a car", "score": 0.0},
            {"sentence1": "rain", "sentence2": "it rains", "score": 1.0}]
    folder = one_config_replica(tmp_path / "stsb", "default", ("train", "validation", "test"), rows,
                                {"sentence1": "string", "sentence2": "string", "score": "float64"})
    monkeypatch.setitem(tasks.STS_TASKS, "stsb", dataclasses.replace(tasks.STS_TASKS["stsb"], hub_id=str(folder)))
    pairs = data.load_sts("stsb", "test", None)
    assert pairs.scores == pytest.approx([4.2, 0.0, 5.0])  # back on the task's 0..5 scale
    assert pairs.sentences1 == ["a cat", "a dog", "rain"]
    assert pairs.source == f"hf:{folder}:test"
    derived = data.load_retrieval("stsb-retrieval", None)  # the derived task reads the same hub copy
    assert list(derived.qrels.values()) == [{"s1": 1}, {"s5": 1}]


def test_all_nli_pair_class_with_integer_labels(tmp_path, monkeypatch):
    rows = [{"premise": "a man sleeps", "hypothesis": "a man rests", "label": 0},
            {"premise": "a man sleeps", "hypothesis": "a man is tall", "label": 1},
            {"premise": "a man sleeps", "hypothesis": "a man runs", "label": 2}]
    folder = one_config_replica(tmp_path / "all-nli", "pair-class", ("train", "dev", "test"), rows,
                                {"premise": "string", "hypothesis": "string", "label": "int64"})
    task = tasks.NLI_TASKS["allnli"]
    monkeypatch.setitem(tasks.NLI_TASKS, "allnli", dataclasses.replace(task, hub_id=str(folder)))
    pairs = data.load_nli("allnli", "dev", None)
    assert pairs.labels == [0, 1, 2] and pairs.hypotheses[2] == "a man runs"


def test_the_commit_a_hub_split_was_read_at_is_named(tmp_path, monkeypatch):
    # datasets caches a hub split under .../<config>/<version>/<commit>/; the source names that commit
    commit = "0123456789abcdef0123456789abcdef01234567"

    class CachedSplit(list):
        cache_files = [{"filename": f"/cache/org___stsb/default/0.0.0/{commit}/stsb-test.arrow"}]

    split = CachedSplit([{"sentence1": "a", "sentence2": "b", "score": 0.2}, {"sentence1": "c", "sentence2": "d",
                                                                            "score": 0.4}])
    monkeypatch.setattr(sources, "load_split", lambda *args: split)
    assert data.load_sts("stsb", "test", None).source == f"hf:sentence-transformers/stsb@{commit}:test"
    assert sources.hub_commit(json) is None


def test_a_split_the_hub_copy_lacks_is_one_line_naming_the_option(tmp_path, scifact_from):
    scifact_from(mteb_beir_replica(tmp_path / "scifact"))
    with pytest.raises(UsageError, match=r"\(default, dev\): Unknown split \"dev\".*; check --retrieval-split"):
        data.load_retrieval("scifact", None, split="dev")


def test_a_judgement_without_ids_is_one_line(tmp_path, scifact_from):
    scifact_from(mteb_beir_replica(tmp_path / "scifact", [*QRELS, {"query-id": None, "corpus-id": "d1", "score": 1}]))
    with pytest.raises(UsageError, match=r"\(test\) row 3: a judgement needs a query-id and a corpus-id"):
        data.load_retrieval("scifact", None)


def test_the_cache_check_resolves_folders_as_datasets_does(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("HF_DATASETS_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", "~/hf")  # datasets expands ~ here
    (tmp_path / "hf/datasets/mteb___scifact").mkdir(parents=True)
    assert hub.uncached_hub_datasets(["mteb/scifact", "mteb/sts12-sts"]) == ["mteb/sts12-sts"]
    assert hub.hub_datasets(("stsb",), ("scifact", "stsb-retrieval"), "allnli") == [
        "sentence-transformers/stsb", "mteb/scifact", "sentence-transformers/all-nli"]
