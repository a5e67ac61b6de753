"""results/geometry.md: geometry records and post-processed evaluations, on records built here."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import with_environment
from test_tables import fake_record, write_run

from sbert_repro.report import pages, paper
from sbert_repro.report import record_groups as runs
from sbert_repro.report import results_page as results
from sbert_repro.report.postprocessing_table import STS_COLUMNS
from sbert_repro.report.prose import fill
from sbert_repro.runs import committed as committed_records
from sbert_repro.runs.records import GEOMETRY_KIND

GIT = {"git": {"commit": "0123456789abcdef", "dirty": False}}
EDGES = [round(-1.0 + 0.05 * i, 2) for i in range(41)]


def model_entry(model: str, role: str, mean_cosine: float, run: str | None = None, seed: int | None = None) -> dict:
    """One model of a geometry record, 8-d, with one empty gold bin."""
    bins = [{"low": float(k), "high": float(k + 1), "count": 10, "mean": mean_cosine + 0.05 * k, "std": 0.1,
             "quartiles": [0.1, 0.2, 0.3]} for k in range(5)]
    bins[1] = {"low": 1.0, "high": 2.0, "count": 0, "mean": None, "std": None, "quartiles": None}
    return {"model": model, "role": role, "run": run, "objective": "sts-cosine" if run else None, "seed": seed,
            "dimension": 8, "anisotropy": {"mean_cosine": mean_cosine, "centered_mean_cosine": -0.00021, "pairs": 100},
            "alignment": 0.31234, "uniformity": -1.23456,
            "spectrum": {"top1_share": 0.41234, "top10_share": 1.0, "effective_rank": 3.456},
            "eigenvalues": [4.0, 2.0, 1.0, 0.5, 0.25, 0.125, 0.0625, 0.0],
            "rogue_dimensions": {"dimensions": [5, 2, 7], "contributions": [0.3, 0.1, 0.05], "share": 0.8765,
                                 "mean_cosine": mean_cosine},
            "gold_bins": {"bins": bins, "separation": 1.2345},
            "histograms": {"edges": EDGES, "random_pairs": [k % 7 for k in range(40)],
                           "gold_bins": [[1] * 40 for _ in range(5)]},
            "encode_s": 1.0}


def geometry_record(models: list[dict]) -> dict:
    return with_environment({
        "kind": GEOMETRY_KIND, "status": "complete",
        "config": {"models": [m["model"] for m in models], "runs": [], "random_models": [], "sentences": None,
                   "sample": 500, "pairs": 100, "seed": 0, "sts_tasks": ["stsb"], "data_dir": "../shared/data"},
        "environment": GIT, "data": {"stsb": "../shared/data/sts/stsb/test.jsonl"},
        "sentences": {"from": "the test sentences of stsb", "distinct": 2758, "sampled": 500},
        "gold_pairs": {"task": "stsb", "pairs": 1379, "aligned_pairs": 412}, "models": models, "wall_seconds": 90.0})


def evaluate_record(values: dict[str, float], postprocess: str | None = None, fit_on: str | None = None,
                    model: str = "org/some-model") -> dict:
    config = {"model": model, "pooling": "mean", "data_dir": "/x/data"}
    if postprocess is not None:  # a plain evaluation recorded before --postprocess existed has neither key
        config.update(postprocess=postprocess, fit_on=fit_on)
    return with_environment({"kind": "evaluate", "config": config, "environment": GIT, "wall_seconds": 60.0,
                             "scores": {f"{task}/spearman": value for task, value in values.items()}})


PLAIN = dict(zip(STS_COLUMNS, (60.0, 62.0, 64.0, 66.0, 68.0, 70.0, 72.0, 66.0), strict=True))


def timed(record: dict) -> dict:
    """fake_record with the stage timings README.md's timings block reads."""
    record["timings"].update(load_data_s=6.0, build_model_s=6.0, save_model_s=6.0)
    return record


def finetuned(seed: int, average: float) -> dict:
    record = timed(fake_record(seed, 80.0))
    record["finetuned"]["scores"].update({f"{task}/spearman": 80.0 for task in STS_COLUMNS[:-1]},
                                         **{"sts-avg/spearman": average})
    return record


def write(records_dir: Path, name: str, record: dict) -> None:
    (records_dir / name).mkdir(parents=True)
    (records_dir / name / "record.json").write_text(json.dumps(record))


def write_all(records_dir: Path) -> None:
    """Two geometry records, a plain and two post-processed evaluations, a fine-tune of the same model (2 seeds)
    and one of another model."""
    write(records_dir, "geometry-a", geometry_record([model_entry("org/some-model", "raw", 0.61234),
                                                      model_entry("bert shape, random weights", "random weights",
                                                                  0.05)]))
    write(records_dir, "geometry-b", geometry_record([model_entry("org/some-model", "fine-tuned", 0.1, "ft", 1)]))
    write(records_dir, "plain", evaluate_record(PLAIN))
    write(records_dir, "whiten", evaluate_record({task: value + 3 for task, value in PLAIN.items()}, "whiten-256"))
    write(records_dir, "center", evaluate_record({t: v for t, v in PLAIN.items() if t != "sts12"} |
                                                 {"sts-avg": 67.25}, "center", "wiki-1m.txt"))
    write_run(records_dir, "ft", [finetuned(1, 80.0), finetuned(2, 83.0)])
    write_run(records_dir, "ft-other", [timed(fake_record(1, 80.0, model="org/other"))])


def rendered(tmp_path: Path, plots: str | None = None) -> dict[str, str]:
    write_all(tmp_path / "records")
    return pages.render_pages(committed_records.load_records(tmp_path / "records"), tmp_path / plots if plots else None)


def test_a_row_per_model_of_every_geometry_record_rounded_as_printed(tmp_path):
    page = rendered(tmp_path)["geometry.md"]
    assert ("| `org/some-model` (raw) | 8 | 0.612 | 0.000 | 0.312 | -1.23 | 41.2% | 100.0% | 3.5 of 8 | "
            "5, 2, 7 (88%) | 1.23 | [record](records/geometry-a/record.json) |") in page
    assert "| `bert shape, random weights` (random weights) | 8 | 0.050 | 0.000 |" in page
    assert "| `org/some-model` (fine-tuned: run `ft`, sts-cosine, seed 1) | 8 | 0.100 |" in page
    assert ("- [geometry-b](records/geometry-b/record.json): 500 of 2,758 distinct sentences sampled from the test "
            "sentences of stsb; 100 random pairs; 1,379 gold-scored stsb pairs (412 of them positives for alignment)"
            ". On 2 CPU cores (Test CPU), commit 0123456789; took 1.5 min.") in page
    assert page.startswith("# Why cosine between raw sentence vectors means little")


def test_plots_are_drawn_linked_and_the_same_bytes_twice(tmp_path):
    write_all(tmp_path / "records")
    records = committed_records.load_records(tmp_path / "records")
    first = pages.render_pages(records, tmp_path / "one")
    second = pages.render_pages(records, tmp_path / "two")
    assert first == second
    drawn = sorted(p.name for p in (tmp_path / "one").glob("geometry-*.png"))
    assert drawn == sorted([f"geometry-{shows}-geometry-{r}.png" for shows in ("bins", "cosines", "spectrum")
                            for r in "ab"] + ["geometry-postprocessing.png"])
    for name in drawn:
        assert f"(plots/{name})" in first["geometry.md"]
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_make_tables_twice_gives_the_same_bytes(tmp_path):
    write_all(tmp_path / "results" / "records")
    pages.make_tables(tmp_path / "results")
    files = sorted(p for p in (tmp_path / "results").rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in files}
    pages.make_tables(tmp_path / "results")
    assert {p: p.read_bytes() for p in sorted(p for p in (tmp_path / "results").rglob("*") if p.is_file())} == before
    assert (tmp_path / "results" / "geometry.md") in before


def test_postprocessing_rows_their_averages_and_change_against_raw(tmp_path):
    page = rendered(tmp_path)["geometry.md"]
    assert ("| `org/some-model`, mean pooling, raw vectors | - | 60.00 | 62.00 | 64.00 | 66.00 | 68.00 | 70.00 | "
            "72.00 | 66.00 | +0.00 | [record](records/plain/record.json) |") in page
    assert ("| `org/some-model`, mean pooling, `whiten-256` | each task's own test sentences | 63.00 | 65.00 | 67.00 | "
            "69.00 | 71.00 | 73.00 | 75.00 | 69.00 | +3.00 | [record](records/whiten/record.json) |") in page
    assert ("| `org/some-model`, mean pooling, `center` | `wiki-1m.txt` | - | 62.00 | 64.00 | 66.00 | 68.00 | 70.00 | "
            "72.00 | 67.25 | +1.25 |") in page  # a task not scored is "-", never 0
    # the fine-tune: mean +- sample std over its 2 seeds; (80 + 83) / 2 = 81.5, std sqrt(2 * 1.5^2) = 2.12
    assert ("| fine-tuned: `ft` (sts-cosine, mean pooling, seeds 1, 2) | - | " + "80.00 +- 0.00 | " * 7 +
            "81.50 +- 2.12 | +15.50 | [records](records/ft/) |") in page
    assert "ft-other" not in page  # another model's fine-tune is no row


def test_postprocessed_and_geometry_records_stay_off_the_main_page(tmp_path):
    write_all(tmp_path / "records")
    records = committed_records.load_records(tmp_path / "records")
    readme = results.render_results(records, plots_dir=None)
    kept = [r for r in records if r.kind != GEOMETRY_KIND and not runs.is_postprocessed(r)]
    link = fill("results", "geometry-link")
    # the page is what it is without them, and a link to geometry.md at its end
    assert readme == results.render_results(kept, plots_dir=None) + f"\n{link}\n"
    table1 = readme.split("## Table 1")[1].split("## ")[0]
    assert table1.count("| `org/some-model` | mean |") == 2  # the plain evaluation and the fine-tune's baseline
    assert "records/whiten/" not in readme and "records/center/" not in readme and "geometry-" not in readme
    runs_page = results.render_runs(records, plots_dir=None)
    assert runs_page == results.render_runs(kept, plots_dir=None)
    fine_tunes = len(runs.finetune_groups(kept))
    assert runs_page.count("### Every task:") == fine_tunes and "records/whiten/" not in runs_page
    # no geometry page, no link
    assert "geometry.md" not in results.render_results(kept, plots_dir=None)
    assert "geometry.md" not in pages.render_pages(kept, plots_dir=None)


def test_published_rows_when_entered_and_a_not_run_line_when_not(tmp_path, monkeypatch):
    assert "| published, not run here |" in rendered(tmp_path / "entered")["geometry.md"]  # paper.py's own rows
    monkeypatch.setattr(paper, "POSTPROCESSING_PUBLISHED", {})
    page = rendered(tmp_path / "none")["geometry.md"]
    assert "`bert-base-uncased`, the paper's model, is not run here" in page
    monkeypatch.setattr(paper, "POSTPROCESSING_PUBLISHED",
                        {"BERT-base made-up + whitening": ("made-up", (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, None, 3.5))})
    monkeypatch.setattr(paper, "POSTPROCESSING_CITATIONS", {"made-up": "Nobody (2099), Table 0, made-up setting"})
    records = committed_records.load_records(tmp_path / "none" / "records")
    page = pages.render_pages(records, plots_dir=None)["geometry.md"]
    assert ("| BERT-base made-up + whitening | published, not run here | 1.00 | 2.00 | 3.00 | 4.00 | 5.00 | 6.00 | - | "
            "3.50 | - | Nobody (2099), Table 0, made-up setting |") in page
    assert "is not run here (these machines" not in page


def test_a_geometry_record_alone_makes_the_page_and_loads_as_complete(tmp_path):
    record = geometry_record([model_entry("org/some-model", "raw", 0.5)])
    del record["status"]  # read as complete, like every record without one
    write(tmp_path / "records", "geometry", record)
    loaded = committed_records.load_records(tmp_path / "records")
    assert [r.status for r in loaded] == ["complete"]
    rendered_pages = pages.render_pages(loaded, plots_dir=tmp_path / "plots")
    assert set(rendered_pages) == {"README.md", "runs.md", "geometry.md"}
    assert "No `evaluate --postprocess` run is recorded yet." in rendered_pages["geometry.md"]
    assert not (tmp_path / "plots" / "geometry-postprocessing.png").exists()
