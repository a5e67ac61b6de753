"""Loaders on small files the tests write (every malformed row a user could hand us), on a stand-in
for the hub, and on ../shared/data when it is present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_jsonl

from sbert_repro.data import loaders as data
from sbert_repro.data import sources, tasks
from sbert_repro.errors import UsageError

GOOD = {"sentence1": "a cat sits", "sentence2": "a cat is sitting", "score": 4.2}


def sts_dir(tmp_path: Path, rows: list, task: str = "stsb", split: str = "test") -> Path:
    write_jsonl(tmp_path / f"sts/{task}/{split}.jsonl", rows)
    return tmp_path


def test_load_sts_reads_rows_and_keeps_the_task_scale(tmp_path):
    rows = [GOOD, {"sentence1": "x y", "sentence2": "z", "score": 0}, {"sentence1": "p", "sentence2": "q", "score": 5}]
    pairs = data.load_sts("stsb", "test", sts_dir(tmp_path, rows))
    assert pairs.sentences1 == ["a cat sits", "x y", "p"]
    assert pairs.scores == [4.2, 0.0, 5.0]
    assert pairs.source.endswith("sts/stsb/test.jsonl")


def test_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "sts/stsb/test.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps(GOOD) + "\n")
    assert len(data.load_sts("stsb", "test", tmp_path)) == 2


@pytest.mark.parametrize("row, message", [
    ({"sentence2": "b", "score": 1}, "missing field 'sentence1'"),
    ({"sentence1": "a", "sentence2": "b"}, "missing field 'score'"),
    ({"sentence1": "a", "sentence2": "b", "score": "high"}, "must be a finite number"),
    ({"sentence1": "a", "sentence2": "b", "score": True}, "must be a finite number"),
    ({"sentence1": "a", "sentence2": "b", "score": float("nan")}, "must be a finite number"),
    ({"sentence1": "a", "sentence2": "b", "score": 5.5}, "outside stsb's range 0..5"),
    ({"sentence1": "a", "sentence2": "b", "score": -1}, "outside stsb's range 0..5"),
    ({"sentence1": "  ", "sentence2": "b", "score": 1}, "'sentence1' must be a non-empty string"),
    ({"sentence1": "a", "sentence2": None, "score": 1}, "'sentence2' must be a non-empty string"),
])
def test_a_malformed_row_names_the_file_and_line(tmp_path, row, message):
    folder = sts_dir(tmp_path, [GOOD, GOOD, row])
    with pytest.raises(UsageError) as error:
        data.load_sts("stsb", "test", folder)
    assert "sts/stsb/test.jsonl:3: " in str(error.value)
    assert message in str(error.value)


def test_sickr_range_starts_at_one(tmp_path):
    with pytest.raises(UsageError, match="outside sickr's range 1..5"):
        data.load_sts("sickr", "test", sts_dir(tmp_path, [{**GOOD, "score": 0.5}], task="sickr"))


@pytest.mark.parametrize("content, message", [
    (b'{"sentence1": "a", ', "test.jsonl:1: not valid JSON"),
    (b'["a", "b", 1]\n', "test.jsonl:1: expected a JSON object"),
    (json.dumps(GOOD).encode() + b'\n{"sentence1": "caf\xe9", "sentence2": "b", "score": 1}\n',
     "test.jsonl:2: not valid UTF-8"),
    (b"", "no rows; the file is empty"),
    (b"\n\n", "no rows; the file is empty"),
    # hostile JSON: absurd nesting, an integer too long to convert, half a surrogate pair
    (b"[" * 100_000 + b"]" * 100_000 + b"\n", r"test.jsonl:1: not valid JSON for us \(nested too deeply\)"),
    (b'{"sentence1": "a", "sentence2": "b", "score": ' + b"1" * 5000 + b"}\n",
     r"test.jsonl:1: not valid JSON for us \(Exceeds the limit"),
    (b'{"sentence1": "a\\ud800", "sentence2": "b", "score": 1}\n', "test.jsonl:1: a .u escape names half of a"),
    (b'{"sentence1": "a", "sentence2": "b", "score": 1e999}\n', "test.jsonl:1: field 'score' must be a finite"),
])
def test_unreadable_files_name_the_line(tmp_path, content, message):
    path = tmp_path / "sts/stsb/test.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        data.load_sts("stsb", "test", tmp_path)


def test_missing_file_says_what_to_pass(tmp_path):
    with pytest.raises(UsageError, match=r"sts/sts12/test.jsonl: file not found; give --data-dir"):
        data.load_sts("sts12", "test", tmp_path)


def test_a_folder_where_a_file_should_be_is_one_line(tmp_path):
    (tmp_path / "sts/stsb/test.jsonl").mkdir(parents=True)
    with pytest.raises(UsageError, match=r"test.jsonl: cannot read it \(Is a directory\)"):
        data.load_sts("stsb", "test", tmp_path)


def test_unknown_split_is_an_error(tmp_path):
    with pytest.raises(UsageError, match="sts12 has no 'train' split"):
        data.load_sts("sts12", "train", tmp_path)


def test_hub_rows_are_rescaled_to_the_task_scale_and_match_local_rows(tmp_path, monkeypatch):
    """sentence-transformers/stsb stores gold / 5: the hub path must give the local file's scores."""
    local_rows = [GOOD, {"sentence1": "p", "sentence2": "q", "score": 5.0}, {"sentence1": "r", "sentence2": "s",
                                                                            "score": 0.0}]
    hub_rows = [{**row, "score": row["score"] / 5} for row in local_rows]
    calls = []

    def fake_hub(dataset_id, config, split, revision, option):
        calls.append((dataset_id, config, split, revision))
        return hub_rows

    monkeypatch.setattr(sources, "load_split", fake_hub)
    from_hub = data.load_sts("stsb", "test", None)
    from_files = data.load_sts("stsb", "test", sts_dir(tmp_path, local_rows))
    assert calls == [("sentence-transformers/stsb", None, "test", "ab7a5ac0e35aa22088bdcf23e7fd99b220e53308")]
    assert from_hub.sentences1 == from_files.sentences1
    assert from_hub.scores == pytest.approx(from_files.scores)


def test_hub_row_errors_name_the_dataset_and_row(monkeypatch):
    monkeypatch.setattr(sources, "load_split", lambda *args: [{"sentence1": "a", "sentence2": "", "score": 0.1}])
    with pytest.raises(UsageError, match=r"mteb/sts12-sts \(test\) row 0: field 'sentence2'"):
        data.load_sts("sts12", "test", None)


# ----------------------------------------------------------------------------- retrieval

def beir_dir(tmp_path: Path, qrels: str = "q1\td1\t1\nq2\td2\t2\n", corpus=None, queries=None) -> Path:
    folder = tmp_path / "retrieval/scifact"
    write_jsonl(folder / "corpus.jsonl", corpus if corpus is not None else [
        {"_id": "d1", "title": "Cats", "text": "cats purr"}, {"_id": "d2", "title": "", "text": "dogs bark"},
        {"_id": 3, "text": "birds sing"}])
    write_jsonl(folder / "queries.jsonl", queries if queries is not None else [
        {"_id": "q1", "text": "what purrs"}, {"_id": "q2", "text": "what barks"}, {"_id": "q3", "text": "unjudged"}])
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "qrels/test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return tmp_path


def test_load_local_beir_keeps_only_judged_queries(tmp_path):
    loaded = data.load_retrieval("scifact", beir_dir(tmp_path))
    assert loaded.corpus == {"d1": {"title": "Cats", "text": "cats purr"}, "d2": {"title": "", "text": "dogs bark"},
                             "3": {"title": "", "text": "birds sing"}}
    assert loaded.queries == {"q1": "what purrs", "q2": "what barks"}
    assert loaded.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2}}


@pytest.mark.parametrize("qrels, message", [
    ("q1\td1\n", "test.tsv:2: expected 3 tab-separated fields"),
    ("q1\td1\tyes\n", "test.tsv:2: score 'yes' is not an integer"),
    ("q1\td1\t1.5\n", "test.tsv:2: score '1.5' is not an integer relevance grade"),
    ("q1\td1\tnan\n", "test.tsv:2: score 'nan' is not an integer"),
    ("", "test.tsv: no judgements"),
    ("q1\td1\t0\nq2\td2\t-1\n", "no judgement of a known query has a grade above 0"),
    ("q9\td1\t1\n", "no judgement of a known query has a grade above 0"),
])
def test_bad_qrels_name_the_line(tmp_path, qrels, message):
    with pytest.raises(UsageError, match=message):
        data.load_retrieval("scifact", beir_dir(tmp_path, qrels=qrels))


def test_integral_float_grades_are_read_as_trec_eval_reads_them(tmp_path):
    loaded = data.load_retrieval("scifact", beir_dir(tmp_path, qrels="q1\td1\t1.0\nq1\td2\t0\nq2\td2\t2.0\n"))
    assert loaded.qrels == {"q1": {"d1": 1, "d2": 0}, "q2": {"d2": 2}}
    assert all(type(grade) is int for judged in loaded.qrels.values() for grade in judged.values())
    assert data.relevance_grade(-1.0, "x") == -1 and data.relevance_grade("3", "x") == 3
    for bad in (1.5, "1e400", True, None, "0x1"):
        with pytest.raises(UsageError, match="x: score .* is not an integer relevance grade"):
            data.relevance_grade(bad, "x")


def test_dangling_judgements_are_kept_counted_and_warned_in_one_line(tmp_path, caplog):
    qrels = "q1\td1\t1\nq1\td9\t2\nq9\td1\t1\nq9\td2\t1\n"  # d9 is no document, q9 no query
    with caplog.at_level("WARNING", logger="sbert_repro.data.loaders"):
        loaded = data.load_retrieval("scifact", beir_dir(tmp_path, qrels=qrels))
    assert loaded.qrels == {"q1": {"d1": 1, "d9": 2}}  # d9 stays: it counts in q1's ideal ranking
    assert loaded.queries == {"q1": "what purrs"}  # q9 has no text: it cannot be searched or scored
    assert loaded.checks == {"judgements_without_document": 1, "judgements_without_query": 2,
                             "identical_ids_ignored": 0, "empty_documents": 0}
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "1 judgement(s) name a document not in the corpus (e.g. 'd9' for query 'q1')" in warnings[0]
    assert "2 judgement(s) name a query not in the queries (e.g. 'q9')" in warnings[0]


def test_a_pair_judged_twice_keeps_the_last_grade_and_says_so(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="sbert_repro.data.loaders"):
        loaded = data.load_retrieval("scifact", beir_dir(tmp_path, qrels="q1\td1\t1\nq1\td1\t2\nq1\td1\t2\n"))
    assert loaded.qrels == {"q1": {"d1": 2}}
    assert any("1 pair(s) judged twice with different grades" in record.getMessage() and "test.tsv:3" in
               record.getMessage() for record in caplog.records)


def test_real_corpus_rows_beir_accepts_are_accepted(tmp_path):
    # an empty text (TREC-COVID's title-only documents), a null title, and fields BEIR does not read
    corpus = [{"_id": "d1", "title": "Only a title", "text": ""}, {"_id": "d2", "title": None, "text": "dogs bark",
                                                                   "metadata": {"url": "x"}}]
    loaded = data.load_retrieval("scifact", beir_dir(tmp_path, corpus=corpus))
    assert loaded.corpus == {"d1": {"title": "Only a title", "text": ""}, "d2": {"title": "", "text": "dogs bark"}}
    with pytest.raises(UsageError, match="corpus.jsonl:1: missing field 'text'"):
        data.load_retrieval("scifact", beir_dir(tmp_path, corpus=[{"_id": "d1", "title": "t"}]))


def test_a_beir_folder_is_a_task_named_by_the_folder(tmp_path):
    folder = beir_dir(tmp_path) / "retrieval/scifact"
    renamed = folder.rename(tmp_path / "my-corpus")
    (renamed / "qrels/dev.tsv").write_text("query-id\tcorpus-id\tscore\nq3\t3\t1\n")
    sts_sets, retrieval_sets = data.load_eval_sets((), (str(renamed),), None)
    assert list(retrieval_sets) == ["my-corpus"] and retrieval_sets["my-corpus"].qrels == {"q1": {"d1": 1},
                                                                                          "q2": {"d2": 2}}
    dev = data.load_retrieval(str(renamed), None, split="dev")
    assert dev.qrels == {"q3": {"3": 1}} and dev.queries == {"q3": "unjudged"}
    with pytest.raises(UsageError, match=r"qrels/train.tsv: no judgements for split 'train'; this folder has "
                                         r"dev, test: pick one with --retrieval-split"):
        data.load_retrieval(str(renamed), None, split="train")


def test_stsb_retrieval_keeps_its_own_split_and_folders_may_not_take_our_task_names(tmp_path):
    folder = sts_dir(tmp_path, [GOOD, {**GOOD, "sentence2": "a dog", "score": 1.0}])
    assert data.load_retrieval("stsb-retrieval", folder, split="dev").queries == {"s0": GOOD["sentence1"]}
    for name in ("stsb", "sts-avg", "scifact"):
        beir = beir_dir(tmp_path / name) / "retrieval/scifact"
        with pytest.raises(UsageError, match=f"its folder's name '{name}' is a task name of ours"):
            tasks.check_retrieval_tasks((str(beir.rename(tmp_path / name / name)),))
    with pytest.raises(UsageError, match="out of trec_eval's range"):
        data.relevance_grade(2**31, "x")


def test_a_query_whose_id_is_a_document_is_counted(tmp_path):
    corpus = [{"_id": "q1", "text": "what purrs"}, {"_id": "d1", "text": "cats purr"}, {"_id": "d2", "text": "x"}]
    loaded = data.load_retrieval("scifact", beir_dir(tmp_path, corpus=corpus))
    assert loaded.checks["identical_ids_ignored"] == 1


def test_duplicate_and_missing_ids_are_errors(tmp_path):
    corpus = [{"_id": "d1", "text": "a"}, {"_id": "d1", "text": "b"}]
    with pytest.raises(UsageError, match="corpus.jsonl:2: duplicate _id 'd1'"):
        data.load_retrieval("scifact", beir_dir(tmp_path, corpus=corpus))
    with pytest.raises(UsageError, match="queries.jsonl:1: missing field '_id'"):
        data.load_retrieval("scifact", beir_dir(tmp_path, queries=[{"text": "x"}]))


# ----------------------------------------------------------------------------- ../shared/data

SHARED_ROW_COUNTS = {("stsb", "train"): 5749, ("stsb", "validation"): 1500, ("stsb", "test"): 1379,
                     ("sts12", "test"): 3108, ("sts13", "test"): 1500, ("sts14", "test"): 3750,
                     ("sts15", "test"): 3000, ("sts16", "test"): 1186, ("sickr", "test"): 9927}


def test_shared_sts_row_counts_match_its_readme(shared_data_dir):
    for (task, split), rows in SHARED_ROW_COUNTS.items():
        assert len(data.load_sts(task, split, shared_data_dir)) == rows, (task, split)


def test_shared_scifact_matches_its_readme(shared_data_dir):
    scifact = data.load_retrieval("scifact", shared_data_dir)
    assert len(scifact.corpus) == 5183
    assert len(scifact.queries) == 300  # the test split's judged queries (of 1,109)
    assert sum(len(judged) for judged in scifact.qrels.values()) == 339


def test_shared_stsb_retrieval_is_derived_from_stsb_test(shared_data_dir):
    derived = data.load_retrieval("stsb-retrieval", shared_data_dir)
    test = data.load_sts("stsb", "test", shared_data_dir)
    assert len(derived.corpus) == len(set(test.sentences1) | set(test.sentences2))
    expected_queries = {s1 for s1, s2, score in zip(test.sentences1, test.sentences2, test.scores, strict=True)
                        if score >= 4.0 and s1 != s2}
    assert set(derived.queries.values()) == expected_queries
    assert all(qid not in judged for qid, judged in derived.qrels.items())


def test_stsb_retrieval_without_any_high_scoring_pair_is_one_line(tmp_path):
    folder = sts_dir(tmp_path, [{**GOOD, "score": 1.0}, {**GOOD, "sentence2": "x", "score": 2.0}])
    with pytest.raises(UsageError, match="no pair scores 4 or more, so stsb-retrieval has no query"):
        data.load_retrieval("stsb-retrieval", folder)


@pytest.mark.parametrize("rows", [[GOOD], [GOOD, {**GOOD, "sentence1": "other"}]])
def test_an_eval_split_must_allow_a_correlation(tmp_path, rows):
    folder = sts_dir(tmp_path, rows)
    with pytest.raises(UsageError, match="a correlation needs at least two pairs with different gold scores"):
        data.load_eval_sets(("stsb",), (), folder)


def test_a_task_or_split_missing_from_the_data_dir_names_what_it_holds(tiny_data_dir: Path):
    with pytest.raises(UsageError) as missing_task:
        data.load_retrieval("nfcorpus", tiny_data_dir)
    assert str(missing_task.value) == (f"--data-dir {tiny_data_dir}: nfcorpus is not there (no retrieval/nfcorpus/); "
                                       "there: scifact; choose one of those, or leave --data-dir out to read the "
                                       "Hugging Face hub")
    with pytest.raises(UsageError) as missing_split:
        data.load_nli("snli", "train", tiny_data_dir)
    assert str(missing_split.value) == (f"{tiny_data_dir / 'nli/snli/train.jsonl'}: not there; "
                                        f"{tiny_data_dir / 'nli/snli'} holds validation: pick one of those")
    with pytest.raises(UsageError, match="there: sickr \\(test\\); sts12 \\(test\\); "):
        data.in_data_dir(tiny_data_dir, "sts/sts17", "test.jsonl")


def test_a_local_task_folder_is_labelled_local_files_not_the_hub(tiny_model_dir: Path, tiny_data_dir: Path,
                                                                 tmp_path: Path, capsys):
    import shutil

    from sbert_repro.cli.main import main

    task = shutil.copytree(tiny_data_dir / "retrieval" / "scifact", tmp_path / "mine")
    out = tmp_path / "out"
    assert main(["evaluate", "--model", str(tiny_model_dir), "--retrieval-tasks", str(task), "--sts-tasks", "none",
                 "--output-dir", str(out), "--device", "cpu"]) == 0
    table = (out / "scores.md").read_text()
    assert "local files" in table and "Hugging Face hub" not in table and "local files" in capsys.readouterr().out
