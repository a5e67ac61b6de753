"""Retrieval at scale: each FAISS index type against numpy brute force, `sbert-repro index` and `search` on
a tiny model and corpus, a killed encode resumed to the same embeddings, and the errors users see."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_jsonl

from sbert_repro.cli.main import main
from sbert_repro.errors import UsageError
from sbert_repro.model.encoder import build_model
from sbert_repro.search import faiss_index as index
from sbert_repro.search import store


def clustered_vectors(rows: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Unit vectors around random centres: the structure that IVF and HNSW exploit in real embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    vectors = centres[rng.integers(clusters, size=rows)] + 0.3 * rng.normal(size=(rows, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def brute_force_top_k(corpus: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ corpus.T), axis=1, kind="stable")[:, :k]


CORPUS, QUERIES = np.split(clustered_vectors(4200, 64, clusters=40, seed=0), [4000])  # queries: unseen points


# Product quantization with 4-bit codes (16 centroids per sub-vector): k-means of 256 centroids would take most of
# a minute on 4,000 vectors, and the order PQ keeps is what is tested, not how much.
@pytest.mark.parametrize(("factory", "nprobe", "ef_search", "least_recall", "train_size"), [
    ("Flat", None, None, 1.0, 4000),
    ("IVF32,Flat", 8, None, 0.9, 4000),
    ("HNSW32", None, 128, 0.9, 4000),
    ("IVF32,PQ32x4", 8, None, 0.25, 4000),  # 16 bytes for 256 lose some order by design
    ("OPQ8,IVF32,PQ8x4", 8, None, 0.08, 1000),  # 4 bytes a vector; random would be 0.0025
])
def test_each_index_type_against_brute_force(factory: str, nprobe: int | None, ef_search: int | None,
                                             least_recall: float, train_size: int):
    built = index.build_index(factory, CORPUS, train_size=train_size, seed=0)
    assert index.set_search_parameters(built, nprobe, ef_search) == {
        **({"nprobe": nprobe} if nprobe else {}), **({"efSearch": ef_search} if ef_search else {})}
    _, rows = index.search(built, QUERIES, 10)
    recall = index.recall_against_exact(rows, brute_force_top_k(CORPUS, QUERIES, 10))
    assert recall >= least_recall
    if factory == "Flat":
        np.testing.assert_array_equal(rows, brute_force_top_k(CORPUS, QUERIES, 10))


def test_exact_search_in_slices_equals_brute_force_and_one_flat_index():
    scores, rows, per_s = index.exact_search_in_slices(CORPUS, QUERIES, 10, rows_per_slice=300)  # 14, the last short
    np.testing.assert_array_equal(rows, brute_force_top_k(CORPUS, QUERIES, 10))
    flat_scores, flat_rows, _ = index.exact_search(CORPUS, QUERIES, 10)
    np.testing.assert_array_equal(rows, flat_rows)
    np.testing.assert_allclose(scores, flat_scores, rtol=1e-6)
    assert per_s > 0


def test_more_probes_never_lose_recall_and_all_probes_are_exact():
    built = index.build_index("IVF32,Flat", CORPUS, train_size=4000, seed=0)
    exact = brute_force_top_k(CORPUS, QUERIES, 10)
    recalls = []
    for nprobe in (1, 4, 32):
        index.set_search_parameters(built, nprobe, None)
        recalls.append(index.recall_against_exact(index.search(built, QUERIES, 10)[1], exact))
    assert recalls[0] < recalls[1] <= recalls[2] == 1.0


def test_recall_against_exact_by_hand():
    exact = np.array([[0, 1, 2, 3], [4, 5, -1, -1]])
    found = np.array([[3, 9, 1, 8], [5, 4, 7, -1]])
    # query 1: 2 of 4 found; query 2: both of its 2 real neighbours found
    assert index.recall_against_exact(found, exact, k=4) == pytest.approx((0.5 + 1.0) / 2)


def test_bytes_per_vector_shrink_with_product_quantization():
    flat = index.build_index("Flat", CORPUS, 4000, 0)
    pq = index.build_index("IVF32,PQ16x4", CORPUS, 4000, 0)
    assert index.bytes_per_vector(flat) == pytest.approx(64 * 4, rel=0.01)
    assert index.bytes_per_vector(pq) < 64 * 4 / 4


@pytest.mark.parametrize(("factory", "message"), [
    ("IVFx,Flat", "faiss cannot build it (could not parse index string IVFx,Flat)"),
    ("IVF8192,Flat", "training on 4000 vectors failed"),
    ("PQ60", "faiss cannot build it"),
])
def test_index_strings_faiss_refuses_are_one_line_errors(factory: str, message: str):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        index.build_index(factory, CORPUS, 4000, 0)
    assert "\n" not in str(error.value)


# ----------------------------------------------------------------------------- encoding to disk

@pytest.fixture(scope="module")
def tiny_model(tiny_model_dir: Path):
    return build_model(str(tiny_model_dir), "mean", "cpu")


def documents_folder(folder: Path, rows: int) -> Path:
    folder.mkdir(parents=True)
    words = ["cat", "dog", "bus", "rain", "pizza", "fog"]
    store.write_documents(((f"d{i}", "", f"the {words[i % 6]} was seen today " + "here " * (i % 5))
                           for i in range(rows)), folder)
    return folder


def test_a_killed_encode_resumes_to_the_same_embeddings(tiny_model, tmp_path: Path):
    whole = documents_folder(tmp_path / "whole", 50)
    expected = np.array(store.encode_to_disk(tiny_model, whole, 50, {"corpus": "x"}, batch_size=4, chunk_size=16))

    killed = documents_folder(tmp_path / "killed", 50)

    def die_after_second_chunk(done: int) -> None:
        if done == 32:
            raise KeyboardInterrupt  # as a kill would, between two chunks

    with pytest.raises(KeyboardInterrupt):
        store.encode_to_disk(tiny_model, killed, 50, {"corpus": "x"}, 4, 16, on_chunk=die_after_second_chunk)
    assert json.loads((killed / store.PROGRESS).read_text())["done"] == 32
    encoded_after_resume = []
    # resumed with another --chunk-size: it keeps the chunks it began with
    resumed = store.encode_to_disk(tiny_model, killed, 50, {"corpus": "x"}, 4, 7, on_chunk=encoded_after_resume.append)
    assert encoded_after_resume == [48, 50]  # only the chunks it had not finished
    np.testing.assert_array_equal(np.array(resumed), expected)
    np.testing.assert_allclose(np.linalg.norm(expected, axis=1), 1.0, rtol=1e-5)

    with pytest.raises(UsageError, match="another corpus or setup \\(corpus differ; corpus: encoded x, now y\\)"):
        store.encode_to_disk(tiny_model, killed, 50, {"corpus": "y"}, 4, 16)


def test_read_documents_seeks_the_rows_asked_for(tmp_path: Path):
    folder = tmp_path / "docs"
    folder.mkdir()
    rows, _ = store.write_documents([("a", "", "first"), ("b", "Titel", "zweite Zeile é"), ("c", "", "third")], folder)
    assert rows == 3
    assert store.read_documents(folder, [2, 0, 1]) == [
        {"_id": "c", "title": "", "text": "third"}, {"_id": "a", "title": "", "text": "first"},
        {"_id": "b", "title": "Titel", "text": "zweite Zeile é"}]
    assert store.stored_texts(folder)(1, 3) == ["Titel zweite Zeile é", "third"]  # encoded as BEIR joins them


def test_a_multi_process_pool_encodes_as_one_process_does(tiny_model, tmp_path: Path):
    one = documents_folder(tmp_path / "one", 40)
    two = documents_folder(tmp_path / "two", 40)
    expected = np.array(store.encode_to_disk(tiny_model, one, 40, {}, 8, 20))
    with store.encoding_pool(tiny_model, 2, "cpu") as pool:
        assert pool is not None and len(pool["processes"]) == 2
        pooled = np.array(store.encode_to_disk(tiny_model, two, 40, {}, 8, 20, pool))
    np.testing.assert_allclose(pooled, expected, atol=1e-5)


# ----------------------------------------------------------------------------- the commands

@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    words = ["cat", "dog", "horse", "pizza", "bread", "rain", "snow", "car", "bus", "boat"]
    rows = [{"_id": f"doc-{word}", "title": "", "text": f"we like the {word}"} for word in words]
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", rows)


def run_index(model: Path, corpus: Path, output: Path, *options: str) -> int:
    return main(["index", "--model", str(model), "--corpus", str(corpus), "--output-dir", str(output),
                 "--device", "cpu", "--chunk-size", "4", *options])


def test_index_then_search_answers_as_brute_force_over_the_model(tiny_model_dir: Path, tiny_corpus: Path,
                                                                 tiny_model, tmp_path: Path, capsys):
    folder = tmp_path / "idx"
    assert run_index(tiny_model_dir, tiny_corpus, folder) == 0
    assert {p.name for p in folder.iterdir()} == {"documents.jsonl", "offsets.npy", "embeddings.f32",
                                                  "encode-progress.json", "index.json"}  # Flat: no index.faiss
    meta = json.loads((folder / "index.json").read_text())
    assert meta["rows"] == 10 and meta["config"]["index"] == "Flat"
    assert meta["self_check"]["recall@10_vs_exact"] == 1.0
    capsys.readouterr()

    assert main(["search", "--index-dir", str(folder), "--top-k", "3", "--json", "--device", "cpu",
                 "the horse", "the snow"]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    texts = [json.loads(line)["text"] for line in tiny_corpus.read_text().splitlines()]
    ids = [json.loads(line)["_id"] for line in tiny_corpus.read_text().splitlines()]
    corpus_vectors = tiny_model.encode(texts, normalize_embeddings=True)
    query_vectors = tiny_model.encode(["the horse", "the snow"], normalize_embeddings=True)
    for answer, query, expected_rows in zip(answers, ["the horse", "the snow"],
                                            brute_force_top_k(corpus_vectors, query_vectors, 3), strict=True):
        assert answer["query"] == query
        assert [hit["id"] for hit in answer["hits"]] == [ids[row] for row in expected_rows]
        assert [hit["text"] for hit in answer["hits"]] == [texts[row] for row in expected_rows]
        similarities = corpus_vectors[expected_rows] @ tiny_model.encode([query], normalize_embeddings=True)[0]
        np.testing.assert_allclose([hit["score"] for hit in answer["hits"]], similarities, atol=1e-5)


def test_search_reads_queries_from_stdin_and_prints_a_table(tiny_model_dir: Path, tiny_corpus: Path, tmp_path: Path,
                                                            capsys, monkeypatch):
    folder = tmp_path / "idx"
    assert run_index(tiny_model_dir, tiny_corpus, folder) == 0
    capsys.readouterr()
    monkeypatch.setattr("sys.stdin", io.StringIO("the cat\n\nthe boat\n"))
    assert main(["search", "--index-dir", str(folder), "--top-k", "2", "--queries-file", "-", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("query:")] == ["query: the cat", "query: the boat"]
    hits = [line.split() for line in lines if not line.startswith("query:")]
    assert [hit[0] for hit in hits] == ["1", "2", "1", "2"] and all(hit[2].startswith("doc-") for hit in hits)


@pytest.fixture(scope="module")
def corpus_of_100(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """100 documents: enough to train 2 IVF lists (faiss's minimum is 39 vectors a list)."""
    words = ["cat", "dog", "horse", "pizza", "bread", "rain", "snow", "car", "bus", "boat"]
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl",
                       [{"_id": f"doc-{a}-{b}", "text": f"we like the {a} and the {b}"} for a in words for b in words])


def test_an_ivf_index_reports_its_recall_and_search_can_change_nprobe(tiny_model_dir: Path, corpus_of_100: Path,
                                                                      tmp_path: Path, capsys):
    folder = tmp_path / "ivf"
    assert run_index(tiny_model_dir, corpus_of_100, folder, "--index", "IVF2,Flat", "--nprobe", "2") == 0
    meta = json.loads((folder / "index.json").read_text())
    assert meta["self_check"]["search_parameters"] == {"nprobe": 2}
    assert meta["self_check"]["recall@10_vs_exact"] == 1.0  # every list probed: exact
    assert "index IVF2,Flat nprobe=2" in capsys.readouterr().out
    assert main(["search", "--index-dir", str(folder), "--nprobe", "1", "--device", "cpu", "the cat"]) == 0
    assert main(["search", "--index-dir", str(folder), "--ef-search", "9", "--device", "cpu", "the cat"]) == 2
    assert "--ef-search: the index 'IVF2,Flat' is not an HNSW graph" in capsys.readouterr().err


@pytest.mark.parametrize("factory", ["IVF2,Flat", "HNSW8"])  # Flat searches its vectors file: no index.faiss
def test_search_on_the_memory_mapped_index_returns_the_hits_of_the_index_read_whole(
        factory: str, tiny_model_dir: Path, corpus_of_100: Path, tmp_path: Path, capsys, monkeypatch):
    folder = tmp_path / "idx"
    assert run_index(tiny_model_dir, corpus_of_100, folder, "--index", factory) == 0
    read_whole, flags = store.faiss.read_index, []

    def spy(path: str, *given: int):
        flags.append(given)
        return read_whole(path, *given)

    search = ["search", "--index-dir", str(folder), "--json", "--top-k", "5", "--device", "cpu", "the cat", "a bus"]
    capsys.readouterr()
    monkeypatch.setattr(store.faiss, "read_index", spy)
    assert main(search) == 0
    mapped = capsys.readouterr().out
    monkeypatch.setattr(store.faiss, "read_index", lambda path, *given: read_whole(path))
    assert main(search) == 0
    assert flags == [(store.faiss.IO_FLAG_MMAP_IFC,)] and mapped == capsys.readouterr().out
    assert len(json.loads(mapped.splitlines()[0])["hits"]) == 5


def test_resume_rebuilds_another_index_without_encoding_again(tiny_model_dir: Path, tiny_corpus: Path,
                                                              tmp_path: Path):
    folder = tmp_path / "idx"
    assert run_index(tiny_model_dir, tiny_corpus, folder) == 0
    embeddings = (folder / "embeddings.f32").read_bytes()
    (folder / "embeddings.f32").touch()
    stamp = (folder / "embeddings.f32").stat().st_mtime_ns
    assert run_index(tiny_model_dir, tiny_corpus, folder, "--resume", "--index", "HNSW8") == 0
    assert (folder / "embeddings.f32").stat().st_mtime_ns == stamp  # not written again
    assert (folder / "embeddings.f32").read_bytes() == embeddings
    assert json.loads((folder / "index.json").read_text())["config"]["index"] == "HNSW8"


def test_index_errors_are_one_line_and_leave_an_existing_index_intact(tiny_model_dir: Path, tiny_corpus: Path,
                                                                      tmp_path: Path, capsys):
    folder = tmp_path / "idx"
    assert run_index(tiny_model_dir, tiny_corpus, folder) == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"_id": "a", "text": "fine"}\n{"_id": "b"}\n')
    other = write_jsonl(tmp_path / "other.jsonl", [{"_id": "x", "text": "something else"}])
    capsys.readouterr()
    cases = [
        (lambda: run_index(tiny_model_dir, bad, folder, "--overwrite"), f"{bad}:2: missing field 'text'"),
        (lambda: run_index(tiny_model_dir, other, folder, "--resume"), "was encoded from another corpus"),
        (lambda: run_index(tiny_model_dir, tiny_corpus, folder), "already exists and is not empty"),
        (lambda: run_index(tiny_model_dir, tiny_corpus, tmp_path / "new2", "--nprobe", "4"),
         "--nprobe: the index 'Flat' has no IVF lists"),
        (lambda: run_index(tiny_model_dir, tmp_path / "missing.jsonl", tmp_path / "new3"), "no such file or folder"),
        (lambda: main(["search", "--index-dir", str(tmp_path), "cat"]), "no finished index there"),
        (lambda: main(["search", "--index-dir", str(folder), "--top-k", "0", "cat"]), "--top-k must be a positive"),
        (lambda: run_index(tiny_model_dir, tiny_corpus, folder, "--overwrite", "--index", "IVF64,Flat"),
         "--index 'IVF64,Flat': 64 IVF lists need at least 2496 training vectors (faiss's minimum, 39 a list), and "
         "this corpus gives 10; use at most 1 list"),
        (lambda: run_index(tiny_model_dir, tiny_corpus, folder, "--overwrite", "--index", "IVFx"),
         "--index 'IVFx': faiss cannot build it (could not parse index string IVFx)"),
    ]
    for command, message in cases:
        code, err = command(), capsys.readouterr().err
        # one error line, the last; before it at most the progress bar of loading the model's weights
        assert code == 2 and "Traceback" not in err and message in err.strip().splitlines()[-1], err
        assert [line for line in err.splitlines() if "error" in line] == [err.strip().splitlines()[-1]], err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert not any(p.name.endswith(".new") for p in tmp_path.iterdir())
    shutil.rmtree(folder)


def test_evaluate_with_an_approximate_index_reports_it_beside_exact_search(tiny_model_dir: Path,
                                                                          tiny_data_dir: Path, tmp_path: Path):
    run_dir, task = tmp_path / "eval", shutil.copytree(tiny_data_dir / "retrieval" / "scifact", tmp_path / "larger")
    with open(task / "corpus.jsonl", "a", encoding="utf-8") as corpus:  # 4 lists need 156 documents
        corpus.writelines(json.dumps({"_id": f"filler{i}", "text": f"the {word} {i % 7}"}) + "\n"
                          for i, word in enumerate(["cat", "dog", "rain", "boat"] * 40))
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir",
                 str(run_dir), "--sts-tasks", "none", "--retrieval-tasks", str(task), "--device", "cpu",
                 "--index", "IVF4,Flat", "--nprobe", "4"]) == 0
    record = json.loads((run_dir / "record.json").read_text())
    scores, speeds = record["scores"], record["speeds"]
    assert scores["larger/approx_recall@10_vs_exact"] == 100.0  # all 4 lists probed
    for metric in ("ndcg@10", "mrr@10", "recall@100", "map@100"):
        assert scores[f"larger/approx_{metric}"] == pytest.approx(scores[f"larger/{metric}"], abs=1e-9)
    assert speeds["larger/approx_build_s"] > 0 and speeds["larger/approx_search_queries_per_s"] > 0
    assert 0 < speeds["larger/approx_bytes_per_vector"]


def test_search_reads_beir_queries_writes_a_trec_run_and_its_json_hits_carry_rank_and_title(
        tiny_model_dir: Path, tmp_path: Path, capsys):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [
        {"_id": "d1", "title": "Cats", "text": "the cat is here"}, {"_id": "d2", "text": "we like the bus"},
        {"_id": "d3", "title": "Rain", "text": "a rain was seen today"}])
    folder = tmp_path / "my-index"
    assert run_index(tiny_model_dir, corpus, folder) == 0
    queries = write_jsonl(tmp_path / "queries.jsonl", [{"_id": "q7", "text": "the cat"}, {"_id": 8, "text": "bus"}])
    capsys.readouterr()
    run = tmp_path / "out.trec"
    assert main(["search", "--index-dir", str(folder), "--queries-file", str(queries), "--json", "--top-k", "3",
                 "--run-file", str(run), "--device", "cpu"]) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [answer["query_id"] for answer in answers] == ["q7", "8"]  # BEIR reads an integer id as its string
    hit = next(hit for hit in answers[0]["hits"] if hit["id"] == "d1")
    assert (hit["title"], hit["text"]) == ("Cats", "the cat is here")
    assert [h["rank"] for h in answers[0]["hits"]] == [1, 2, 3]
    lines = [line.split() for line in run.read_text().splitlines()]
    assert len(lines) == 6 and {line[5] for line in lines} == {f"{tiny_model_dir.name}@my-index"}
    assert [(line[0], line[2], int(line[3])) for line in lines[:3]] == [
        ("q7", h["id"], h["rank"]) for h in answers[0]["hits"]]
    # the table shows the text as it was encoded, title first
    assert main(["search", "--index-dir", str(folder), "--top-k", "3", "--device", "cpu", "the cat"]) == 0
    assert "Cats the cat is here" in capsys.readouterr().out


def test_search_refuses_queries_both_on_the_command_line_and_in_a_file(tiny_model_dir: Path, tiny_corpus: Path,
                                                                       tmp_path: Path, capsys):
    folder = tmp_path / "idx"
    assert run_index(tiny_model_dir, tiny_corpus, folder) == 0
    capsys.readouterr()
    missing = tmp_path / "missing.txt"
    assert main(["search", "--index-dir", str(folder), "--queries-file", str(missing), "--device", "cpu", "q"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        f"queries on the command line and --queries-file {missing}: give one of them")
    assert main(["search", "--index-dir", str(folder), "--queries-file", str(missing), "--device", "cpu"]) == 2
    assert f"--queries-file {missing}: no such file" in capsys.readouterr().err


def test_a_fine_tuned_models_trec_runs_are_tagged_with_its_run_not_model():
    from sbert_repro.evaluation.run_files import trec_tag

    assert trec_tag("runs/retrieval-minilm/seed-42/model") == "retrieval-minilm-seed-42-model"
    assert trec_tag("runs/mine/model") == "mine-model"
    assert trec_tag("sentence-transformers/all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"
