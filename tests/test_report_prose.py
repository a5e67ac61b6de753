"""The results pages' prose is in Markdown templates (sbert_repro/report/templates/): every section of every
template is used by a page, every placeholder is filled, and the wheel ships the templates."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

import pytest
from conftest import REPO_ROOT
from test_cross_encoder import cost_record
from test_geometry_report import PLAIN, evaluate_record, geometry_record, model_entry, write
from test_loss_report import write_losses, write_matryoshka
from test_perf_cuda import gpu_perf_record
from test_reranker import reranker_record

from sbert_repro.report import ann_table as ann
from sbert_repro.report import cost_table as cost
from sbert_repro.report import dimension_table as dimensions
from sbert_repro.report import gain_table as gains
from sbert_repro.report import geometry_page as geometry
from sbert_repro.report import loss_table as losses
from sbert_repro.report import pages, paper, prose
from sbert_repro.report import perf_page as perf
from sbert_repro.report import postprocessing_table as postprocessing
from sbert_repro.report import record_groups as runs
from sbert_repro.report import results_page as results
from sbert_repro.report import retrieval_table as retrieval
from sbert_repro.report import scale_page as scale
from sbert_repro.report import summary_table as summary
from sbert_repro.runs import committed as committed_records
from sbert_repro.runs import records
from sbert_repro.runs.record_parts import AnnPoint
from sbert_repro.runs.schema import AnnRecord

TEMPLATES = resources.files(prose.__package__) / "templates"


def template_sections() -> set[tuple[str, str]]:
    pages_with_prose = [path.name.removesuffix(".md") for path in TEMPLATES.iterdir() if path.name.endswith(".md")]
    return {(page, section) for page in pages_with_prose for section in prose.sections(page)}


def test_fill_refuses_a_placeholder_without_a_value_and_a_value_without_a_place():
    assert prose.fill("results", "every-task", setup="`m`, mean pooling") == "### Every task: `m`, mean pooling"
    with pytest.raises(ValueError, match=r"'every-task': placeholders \['setup'\], values given for \[\]"):
        prose.fill("results", "every-task")
    with pytest.raises(ValueError, match=r"values given for \['setup', 'stray'\]"):
        prose.fill("results", "every-task", setup="x", stray="y")


def test_the_pages_fill_every_section_of_every_template(monkeypatch, tmp_path):
    filled: set[tuple[str, str]] = set()
    original_fill = prose.fill

    def recording_fill(page: str, section: str, **values: object) -> str:
        filled.add((page, section))
        return original_fill(page, section, **values)  # which refuses a placeholder left unfilled

    for page_module in (prose, results, retrieval, dimensions, losses, ann, perf, cost, geometry, postprocessing,
                        summary, gains, scale):  # prose: what fill_some fills
        monkeypatch.setattr(page_module, "fill", recording_fill)
    committed = committed_records.load_records(REPO_ROOT / "results" / "records")
    # An ANN benchmark whose every index reaches the recall target, and one where none does, whatever the
    # committed benchmarks did: both sentences are drawn.
    benchmark = next(record for record in committed if record.kind == records.ANN_KIND)

    def recalls(recall: Callable[[AnnPoint], float]) -> AnnRecord:
        points = [point.model_copy(update={"recall_at_10_vs_exact": recall(point)}) for point in benchmark.large]
        return benchmark.model_copy(update={"large": points})

    reaching, missing = recalls(lambda point: 1.0), recalls(lambda point: float(point.index == "Flat"))
    rendered = pages.render_pages([*committed, reaching, missing, records.typed(cost_record()).at("cost")],
                                  plots_dir=None)
    assert set(rendered) == {"README.md", "runs.md", "ann.md", "perf.md", "geometry.md", "scale.md"}
    # geometry.md, with its plots (their captions are prose): a geometry run alone, then with post-processing
    write(tmp_path / "records", "geometry", geometry_record([model_entry("org/some-model", "raw", 0.5)]))
    pages.render_pages(committed_records.load_records(tmp_path / "records"), plots_dir=tmp_path / "plots")
    write(tmp_path / "records", "plain", evaluate_record(PLAIN))
    write(tmp_path / "records", "whiten", evaluate_record(PLAIN, "whiten"))
    pages.render_pages(committed_records.load_records(tmp_path / "records"), plots_dir=tmp_path / "plots")
    # ... and before any published post-processing row is entered in paper.py (the page says so)
    monkeypatch.setattr(paper, "POSTPROCESSING_PUBLISHED", {})
    pages.render_pages(committed_records.load_records(tmp_path / "records"), plots_dir=None)
    # The loss comparison with a verdict each way, and Matryoshka runs with and without SciFact, short of the goal
    # and reaching it, with their plots
    write_losses(tmp_path / "losses", model="org/a-model", suffix="-a")
    write_losses(tmp_path / "losses", angle=False, model="org/b-model", suffix="-b")
    write_matryoshka(tmp_path / "losses")
    write_matryoshka(tmp_path / "losses", scifact=False, objective="sts-cosine", name="cosine-matryoshka")
    groups = runs.finetune_groups(committed_records.load_records(tmp_path / "losses"))
    losses.loss_table(groups)
    dimensions.matryoshka_section(groups, tmp_path / "plots")
    # The loss comparison before any other loss than the paper's is recorded (the page says so)
    cosine_only = [group for group in runs.finetune_groups(committed) if losses.objective(group) == "sts-cosine"]
    losses.loss_table(cosine_only)
    # A cross-encoder run without an sts-cosine run trained the same way beside it
    results.cross_against_bi([group for group in runs.finetune_groups(committed)
                              if losses.objective(group) == "cross-encoder"])
    # Retrieve, then re-rank: a re-ranker run
    retrieval.rerank_section([[reranker_record(42, 66.0)]], [])
    # Who leads, each way, beside each of the paper's leaders
    results.lead(0.0)
    for ours, theirs in (("cross-encoder", "bi-encoder"), ("", "bi-encoder"), ("", "")):
        results.agreement(ours, theirs)
    # The tables a run prints and writes: its gains over one seed and several, a model's scores
    rows = gains.gain_rows({"stsb/spearman": 80.0}, [{"stsb/spearman": 81.0}])
    for seeds in ([42], [42, 43]):
        gains.gain_table_markdown(rows, "org/model", "Hugging Face hub", seeds)
    gains.scores_table_markdown({"stsb/spearman": 80.0}, "org/model", "Hugging Face hub")
    # A GPU benchmark, with its goal's numbers (last: its torch.cuda mocks stay for the rest of the test)
    perf.render_perf([records.typed(gpu_perf_record(monkeypatch, tmp_path)).at("perf-gpu")], [], None)
    assert filled == template_sections()
    assert sum(page.count("## ") for page in rendered.values()) > 10  # the headings made it into the pages


def test_every_section_is_text_and_nothing_is_outside_a_section_but_the_note_on_top():
    for page, section in template_sections():
        text = prose.sections(page)[section]
        assert text.strip() and not text.startswith("\n") and not text.endswith("\n"), (page, section)
        assert "<!--" not in text, (page, section)  # a misspelt marker would leave its comment in the page


def test_the_wheel_ships_every_template():
    tomllib = pytest.importorskip("tomllib")
    package_data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "package-data"]
    report = REPO_ROOT / "sbert_repro" / "report"
    shipped = {path for pattern in package_data["sbert_repro.report"] for path in report.glob(pattern)}
    templates = set((report / "templates").glob("*"))
    assert templates and templates <= shipped
