"""results/: the committed tables regenerate byte for byte, and the aggregation is right on records built here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO_ROOT, with_environment

from sbert_repro.errors import UsageError
from sbert_repro.report import ann_table as ann
from sbert_repro.report import pages
from sbert_repro.report import record_groups as runs
from sbert_repro.report import results_page as results
from sbert_repro.runs import committed as committed_records
from sbert_repro.runs import records

RESULTS = REPO_ROOT / "results"


def test_committed_results_readme_regenerates_byte_for_byte(regenerated_results):
    records = committed_records.load_records(RESULTS / "records")
    assert records, "results/records/ holds no record"
    assert set(pages.render_pages(records, plots_dir=None)) == {path.name for path in RESULTS.glob("*.md")}, \
        "a page of results/ has no records, or none"
    for committed in sorted(RESULTS.glob("*.md")):
        assert committed.read_text(encoding="utf-8") == (regenerated_results / "results" / committed.name).read_text(
            encoding="utf-8"), f"results/{committed.name} is stale: run python scripts/make_tables.py"
    assert (REPO_ROOT / "README.md").read_text(encoding="utf-8") == (regenerated_results / "README.md").read_text(
        encoding="utf-8"), "README.md's headline is stale: run python scripts/make_tables.py"
    committed_plots = {p.name for p in (RESULTS / "plots").glob("*.png")}
    assert committed_plots == {p.name for p in (regenerated_results / "results" / "plots").glob("*.png")}


def fake_record(seed: int, stsb_after: float, pooling: str = "mean", model: str = "org/some-model",
                kind: str = "finetune") -> dict:
    base = {"stsb/spearman": 70.0, "stsb/pearson": 71.0, "scifact/ndcg@10": 50.0, "scifact/recall@10": 60.0}
    after = {"stsb/spearman": stsb_after, "stsb/pearson": 72.0, "scifact/ndcg@10": 51.0, "scifact/recall@10": 61.0}
    config = {"model": model, "pooling": pooling, "data_dir": "/x/data", "epochs": 4, "batch_size": 16, "lr": 2e-5,
              "warmup_ratio": 0.1, "weight_decay": 0.01, "max_seq_length": 128, "max_train_samples": None,
              "eval_max_seq_length": None, "seed": seed, "precision": "fp32", "group_by_length": False}
    return with_environment({
        "kind": kind, "config": config, "environment": {"git": {"commit": "0123456789abcdef", "dirty": False}},
        "baseline": {"scores": base}, "finetuned": {"scores": after},
        "training": {"best_validation_spearman": stsb_after + 2, "steps_per_s": 2.0,
                     "validation_history": [{"epoch": 1.0, "validation_spearman": stsb_after + 2}]},
        "timings": {"baseline_eval_s": 60.0, "train_s": 120.0, "finetuned_eval_s": 60.0, "total_s": 240.0}})


def write_run(records_dir: Path, name: str, records: list[dict]) -> None:
    for record in records:
        folder = records_dir / name / f"seed-{record['config']['seed']}"
        folder.mkdir(parents=True)
        (folder / "record.json").write_text(json.dumps(record))


def test_seeds_of_one_setup_become_one_row_with_mean_and_sample_std(tmp_path):
    write_run(tmp_path / "records", "run-a", [fake_record(1, 80.0), fake_record(2, 82.0), fake_record(3, 84.0)])
    write_run(tmp_path / "records", "run-b", [fake_record(1, 75.0, pooling="cls")])
    page = results.render_results(committed_records.load_records(tmp_path / "records"), plots_dir=None)
    # mean 82, sample std sqrt(((-2)^2 + 0 + 2^2) / 2) = 2
    assert "| `org/some-model`, mean pooling, STSb 4 epoch(s), seeds 1, 2, 3 | local copies (data/) | 3 | 70.00 | " \
           "82.00 +- 2.00 | +12.00 |" in page
    assert "| `org/some-model`, cls pooling, STSb 4 epoch(s), seeds 1 | local copies (data/) | 1 | 70.00 | 75.00 | " \
           "+5.00 |" in page
    # ablation: best validation (+2) per seed
    assert "| `org/some-model` | mean | 4 | 3 | 84.00 +- 2.00 | 87.44 |" in page
    assert "| `org/some-model` | cls | 4 | 1 | 77.00 | 86.62 |" in page
    # the paper's model was not run: its rows say so instead of showing a number
    assert "`bert-base-uncased`, mean pooling, 4 epochs (the paper's SBERT-STSb-base) | - |" in page
    assert results.NOT_RUN in page
    # one Table 1 row for the baseline shared by the three seeds
    assert page.count("| `org/some-model` | mean | local copies (data/) |") == 1


def test_a_task_some_seeds_lack_is_never_averaged_in(tmp_path):
    partial = fake_record(2, 82.0)
    del partial["finetuned"]["scores"]["scifact/recall@10"]
    write_run(tmp_path / "records", "run", [fake_record(1, 80.0), partial])
    page = results.render_results(committed_records.load_records(tmp_path / "records"), plots_dir=None)
    assert "| 60.00 | - |" in page  # Recall@10 after: "-" rather than a mean over one seed or with a 0


def test_plots_are_written_and_deterministic(tmp_path):
    write_run(tmp_path / "records", "run", [fake_record(1, 80.0), fake_record(2, 82.0)])
    records = committed_records.load_records(tmp_path / "records")
    pages.render_pages(records, plots_dir=tmp_path / "one")
    pages.render_pages(records, plots_dir=tmp_path / "two")
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    # the summary's, and each run's three, named by the run they show
    assert names == ["gains-run.png", "seeds-run.png", "summary.png", "validation-run.png"]
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_add_run_copies_records_but_never_weights_or_over_existing(tmp_path):
    run = tmp_path / "runs" / "my-run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "model.safetensors").write_bytes(b"weights")
    (run / "record.json").write_text(json.dumps(fake_record(1, 80.0)))
    (run / "gains.md").write_text("table")
    pages.make_tables(tmp_path / "results", add=[run])
    copied = sorted(p.relative_to(tmp_path / "results").as_posix() for p in (tmp_path / "results").rglob("*")
                    if p.is_file())
    assert "records/my-run/record.json" in copied and "records/my-run/gains.md" not in copied
    assert not any("safetensors" in p for p in copied)
    assert "README.md" in copied
    committed_records.add_run(run, tmp_path / "results" / "records")  # the same records again (a retry): accepted
    (run / "record.json").write_text(json.dumps(fake_record(1, 81.0)))  # other records under the same name: never
    with pytest.raises(UsageError, match="already exists"):
        committed_records.add_run(run, tmp_path / "results" / "records")


def test_nli_only_runs_get_their_own_table_not_table2(tmp_path):
    nli = fake_record(1, 75.0)
    nli["config"].update({"objective": "nli-softmax", "nli_task": "snli", "nli_split": "validation"})
    write_run(tmp_path / "records", "nli", [nli])
    page = results.render_results(committed_records.load_records(tmp_path / "records"), plots_dir=None)
    table2 = page.split("## Table 2")[1].split("## ")[0]
    nli_section = page.split("## Trained on NLI only")[1].split("## ")[0]
    assert "NLI softmax" not in table2
    assert "NLI softmax (u,v,\\|u-v\\|) on snli validation, 1 epoch(s)" in nli_section
    assert "SBERT-NLI-base" in nli_section


def test_a_seed_recorded_twice_counts_once(tmp_path, caplog):
    write_run(tmp_path / "records", "run-a", [fake_record(1, 80.0)])
    write_run(tmp_path / "records", "run-b", [fake_record(1, 90.0), fake_record(2, 82.0)])
    [group] = runs.finetune_groups(committed_records.load_records(tmp_path / "records"))
    assert [record.finetuned.score("stsb/spearman") for record in group] == [80.0, 82.0]
    assert "repeats seed 1" in caplog.text


def test_unreadable_record_and_missing_readme_markers_are_one_line_errors(tmp_path):
    (tmp_path / "results" / "records" / "bad").mkdir(parents=True)
    (tmp_path / "results" / "records" / "bad" / "record.json").write_text("{not json")
    with pytest.raises(UsageError, match="bad/record.json: not a readable run record"):
        committed_records.load_records(tmp_path / "results" / "records")
    readme = tmp_path / "README.md"
    readme.write_text("no markers here")
    with pytest.raises(UsageError, match="README.md: no '<!-- make_tables: headline -->'"):
        pages.make_tables(tmp_path / "results", readme=readme)
    assert not (tmp_path / "results" / "README.md").exists()  # nothing written


def test_seeds_that_scored_fewer_tasks_still_plot(tmp_path):
    full, partial = fake_record(1, 80.0), fake_record(2, 82.0)
    del partial["finetuned"]["scores"]["scifact/ndcg@10"]
    write_run(tmp_path / "records", "run", [full, partial])
    results.render_runs(committed_records.load_records(tmp_path / "records"), plots_dir=tmp_path / "plots")
    assert (tmp_path / "plots" / "gains-run.png").is_file()


def ann_point(index: str, recall: float, per_s: float, **knob: int) -> dict:
    return {"index": index, "search_parameters": knob, "build_s": 1.0, "bytes_per_vector": 100.0,
            "queries_per_s": per_s, "exact_queries_per_s": 50.0, "recall@10_vs_exact": recall}


def test_ann_page_names_the_fastest_setting_that_holds_the_recall_target(tmp_path):
    points = [ann_point("Flat", 1.0, 50.0), ann_point("IVF64,Flat", 0.94, 5000.0, nprobe=1),
              ann_point("IVF64,Flat", 0.96, 1000.0, nprobe=8), ann_point("HNSW32", 0.99, 800.0, efSearch=64)]
    record = records.typed(with_environment({
        "kind": records.ANN_KIND, "wall_seconds": 60.0,
        "config": {"model": "org/m", "output_dir": "runs/ann", "vectors": 1000, "queries": 10, "train_size": 100},
        "vectors": {"rows": 1000, "queries": 10, "dim": 8, "derived_from": "noise"}, "large": points,
        "scifact": [{"index": "HNSW32", "ef_search": 16, "ndcg@10": 60.0, "exact_ndcg@10": 61.5,
                     "recall@10_vs_exact": 0.9, "queries_per_s": 900.0, "exact_queries_per_s": 300.0}]})).at("ann")
    best = records.best_at_target_recall(record.large)
    assert (best.index, best.search_parameters, ann.speedup(best)) == ("IVF64,Flat", {"nprobe": 8}, 20.0)
    assert records.best_at_target_recall(record.large[:2]) is None
    page = ann.render_ann([record], plots_dir=tmp_path)
    assert "**Fastest setting at recall@10 >= 0.95: `IVF64,Flat` (nprobe=8), 1,000 queries/s, 20.0x exact" in page
    assert "| `HNSW32` | efSearch=64 | 0.990 | 800 | 16.0x | 0.0 min | 100 |" in page
    assert "| `HNSW32` | ef_search=16 | 60.00 | 61.50 | -1.50 | 0.900 | 900 | 300 |" in page
    assert "faiss-cpu 1.15.1, commit abc, [record](records/ann/record.json)" in page
    assert (tmp_path / "speed-recall-ann.png").stat().st_size > 0
    # the runs page ignores benchmark records
    assert results.render_results([record], plots_dir=None) == results.render_results([], plots_dir=None)


def test_added_records_name_no_path_of_the_machine_they_ran_on(tmp_path):
    from sbert_repro.runs.paths import REPO_ROOT

    record = fake_record(1, 90.0)
    # A folder outside the one that holds the checkout, wherever the checkout sits (/tmp, /work, a home folder).
    elsewhere = Path("/", "not-" + (REPO_ROOT.parent.parts[1:2] or ("root",))[0], "x", "run-1")
    record["config"].update(model="/opt/venv/lib/python3.11/site-packages/some_pkg/model",
                            data_dir=str(REPO_ROOT.parent / "shared" / "data"), output_dir=str(elsewhere),
                            argv=["--model=/opt/venv/lib/python3.11/site-packages/some_pkg/model", "--seed", "1"])
    record["data"] = {"stsb": f"{REPO_ROOT.parent}/shared/data/sts/stsb/test.jsonl",
                      "scifact": "hf:mteb/scifact@abc:test"}
    write_run(tmp_path / "runs", "run", [record])
    committed_records.add_run(tmp_path / "runs" / "run", tmp_path / "records")
    committed = json.loads(next((tmp_path / "records" / "run").rglob("record.json")).read_text())
    assert committed["config"]["model"] == "some_pkg/model"
    assert committed["config"]["data_dir"] == "../shared/data"
    assert committed["config"]["output_dir"] == ".../x/run-1"
    assert committed["config"]["argv"] == ["--model=some_pkg/model", "--seed", "1"]
    assert committed["data"] == {"stsb": "../shared/data/sts/stsb/test.jsonl", "scifact": "hf:mteb/scifact@abc:test"}
    # the same --add again (a retry) is accepted: it compares what would be committed
    committed_records.add_run(tmp_path / "runs" / "run", tmp_path / "records")


def test_readme_opens_with_the_measured_gains_make_tables_computes_and_the_papers():
    """README's first 25 lines: our STS and retrieval gains, as the summary computes them from the committed
    records, each with its model, and the paper's bert-base-uncased gain."""
    from sbert_repro.report.labels import format_score, mean_and_std
    from sbert_repro.report.summary_table import headline_groups

    head = "\n".join((REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:25])
    groups = runs.finetune_groups(results.page_records(committed_records.load_records(RESULTS / "records")))
    recipe, search = headline_groups(groups)
    for group, key in ((recipe, "stsb/spearman"), (search, "scifact/ndcg@10")):
        before = group[0].baseline.score(key)
        after = format_score(*mean_and_std([record.finetuned.score(key) for record in group]))
        assert f"{before:.2f} to {after}" in head, (key, before, after)
    assert "all-MiniLM-L6-v2" in head and "bert-base-uncased 46.35 to 84.67 +- 0.19" in head


def test_only_the_repositorys_own_results_refill_its_readme_unless_readme_is_given(tmp_path):
    from sbert_repro.cli.tables import make_tables_script

    repo = tmp_path / "repo"
    repo.mkdir()
    start, end = results.README_BLOCK
    readme = repo / "README.md"
    readme.write_text(f"# x\n{start}old\n{end}", encoding="utf-8")
    for results_dir in (tmp_path / "elsewhere" / "results", repo / "results"):
        write_run(results_dir / "records", "run", [fake_record(1, 80.0), fake_record(2, 82.0)])
    assert make_tables_script(["--results-dir", str(tmp_path / "elsewhere" / "results")], repo) == 0
    assert readme.read_text(encoding="utf-8") == f"# x\n{start}old\n{end}"  # another folder's records: untouched
    assert make_tables_script(["--results-dir", str(repo / "results")], repo) == 0
    assert "old" not in readme.read_text(encoding="utf-8")  # the repository's own results: its headline refilled


def test_the_summary_plot_is_drawn_only_where_a_model_of_ours_is(tmp_path):
    from sbert_repro.report.summary_table import SummaryRow, plot_summary

    bm25 = SummaryRow("BM25 (bm25s, lucene, k1 1.2, b 0.75, no stemmer)", "bm25", {"scifact/ndcg@10": (67.9, None)},
                      None, "record")
    assert not plot_summary([bm25], tmp_path / "summary.png") and not (tmp_path / "summary.png").exists()
    raw = SummaryRow("model, raw (before any training)", "raw", {"scifact/ndcg@10": (64.5, None)}, None, "record")
    assert plot_summary([raw, bm25], tmp_path / "summary.png") and (tmp_path / "summary.png").is_file()
