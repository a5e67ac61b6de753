"""results/README.md: the paper's tables regenerated from committed run records, with plots; and results/runs.md,
each fine-tune's own tables.

Every number here is read from a record.json under results/records/ (written by a real run) or from the
paper (paper.py), and each row says which. The output is deterministic: records are read in sorted order,
numbers are rounded only when printed, and plots carry no timestamps, so the same records give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

from sbert_repro.config.objectives import NLI_DATA, get_objective
from sbert_repro.errors import UsageError
from sbert_repro.report import paper
from sbert_repro.report.dimension_table import dimension_table, matryoshka_section
from sbert_repro.report.gain_table import gain_cells, gain_rows
from sbert_repro.report.labels import commit_label, data_label, format_gain, format_score, mean_and_std, minutes
from sbert_repro.report.loss_table import REFERENCE, comparison_key, loss_groups, loss_table, reference, stsb_mean
from sbert_repro.report.loss_table import training as trained_how
from sbert_repro.report.markdown import STS_AVG, STSB, code, markdown_table, record_link, text
from sbert_repro.report.plots import plot_gains, plot_seed_spread, plot_validation
from sbert_repro.report.prose import fill
from sbert_repro.report.record_groups import (
    describe,
    finetune_groups,
    geometry_page_records,
    is_postprocessed,
    precision_option,
    run_folders,
    seed_stat,
    seed_values,
    sources,
    speed_options,
)
from sbert_repro.report.retrieval_table import rerank_section, retrieval_sections
from sbert_repro.report.summary_table import is_paper_recipe, summary_rows, summary_section, summary_sentences
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.records import BM25_KIND, EVALUATE_KIND, FINETUNE_KIND, write_text_atomic
from sbert_repro.runs.schema import AnyRecord, EvaluateRecord, FinetuneRecord

Group = list[FinetuneRecord]
STS_COLUMNS = paper.TABLE1_COLUMNS  # ours are the paper's Table 1 columns
NOT_RUN = "not run here (needs the Hugging Face hub)"
# The paper's rows a cross-encoder is set beside (Table 2): its BERT cross-encoder and SBERT-STSb-base; and its model
# trained on NLI only (Table 1).
PAPER_CROSS = paper.TABLE2[next(row for name, row in paper.TRAINED_ROW.items() if get_objective(name).cross_encoder)]
PAPER_BI = paper.TABLE2[paper.TRAINED_ROW[REFERENCE]]
PAPER_NLI = "SBERT-NLI-base"
# Table 2's groups of rows, in order: what a run changes from the paper's recipe.
VARIANTS = ("paper recipe", "epochs", "pooling", "loss", "Matryoshka", "precision and batching", "NLI first",
            "cross-encoder")


def table1(records: list[FinetuneRecord | EvaluateRecord]) -> list[str]:
    rows, seen = [], set()
    for record in records:
        if record.config.postprocess:
            continue  # a post-processed baseline (finetune --postprocess) is not a raw model's: geometry.md
        scores = record.baseline if isinstance(record, FinetuneRecord) else record
        cells = tuple("-" if (value := scores.score(f"{task}/spearman")) is None else f"{value:.2f}"
                      for task in STS_COLUMNS)
        row_key = (model_label(record.config.model), record.config.pooling + precision_option(record),
                   data_label(record.config.data_dir), cells)
        if row_key not in seen and any(cell != "-" for cell in cells):  # one baseline, however many runs had it
            seen.add(row_key)
            rows.append((code(row_key[0]), row_key[1], text(row_key[2]), *cells, record_link(record)))
    if not any(record.config.model == "bert-base-uncased" for record in records):
        rows += [("`bert-base-uncased`", pooling, "-", *("-" for _ in STS_COLUMNS), f"{NOT_RUN}; paper: {row}")
                 for pooling, row in paper.TABLE1_ROW_FOR_POOLING.items()]
    expected = paper.EXPECTED_MEAN_POOLING
    rows.append(("`bert-base-uncased`, expected with `--pooling mean`", "mean",
                 f"[{paper.EXPECTED_MEAN_POOLING_SOURCE}]({paper.EXPECTED_MEAN_POOLING_URL})",
                 *(f"{v:.2f}" for v in expected), f"{sum(expected) / len(expected):.2f}",
                 "not the paper's: the paper's Avg. BERT row came from another pooling set-up"))
    rows += [(name, None, "paper", *(f"{v:.2f}" for v in values), "paper, Table 1")
             for name, values in paper.TABLE1.items()]
    return [fill("results", "table1"), "", *markdown_table(("model", "pooling", "data", *STS_COLUMNS, "source"), rows,
                                                           "lll" + "r" * len(STS_COLUMNS) + "l")]


def stsb_trained(group: Group) -> bool:
    """Trained on STSb pairs last: Table 2's rows (a cross-encoder's row stands beside the paper's BERT one)."""
    return get_objective(group[0].config.objective).trains_on[-1] == "sts-pairs"


def table2(groups: list[Group]) -> list[str]:
    rows: list[tuple[str | None, ...]] = []
    for group in sorted(filter(stsb_trained, groups), key=lambda group: VARIANTS.index(variant(group[0]))):
        if (values := seed_values(group, "finetuned", STSB)) is None:
            continue  # runs that did not score STSb test (e.g. ablation runs scored on validation only)
        before = group[0].baseline.score(STS_AVG)  # one baseline, shared by the seeds
        avg = "-" if before is None else f"{before:.2f} -> {seed_stat(group, 'finetuned', STS_AVG)}"
        rows.append((variant(group[0]), describe(group), text(data_label(group[0].config.data_dir)), str(len(group)),
                     *gain_cells(group[0].baseline.scores[STSB], values), avg, sources(group)))
    if not any(group[0].config.model == "bert-base-uncased" for group in groups):
        rows.append(("paper recipe", "`bert-base-uncased`, mean pooling, 4 epochs (the paper's SBERT-STSb-base)",
                     *("-" for _ in range(6)), NOT_RUN))
    rows += [("paper, bert-base-uncased", name, "paper", str(paper.TABLE2_SEEDS), None, f"{mean:.2f} +- {std:.2f}",
              None, None, "paper, Table 2") for name, (mean, std) in paper.TABLE2.items()]
    header = ("varies", "setup", "data", "seeds", "baseline", "fine-tuned", "gain", "7-task avg before -> after",
              "source")
    return [fill("results", "table2"), "", *markdown_table(header, rows, "lllrrrrll"), *cross_against_bi(groups)]


def variant(record: FinetuneRecord) -> str:
    """What a run trained on STSb varies from the paper's recipe, the first that applies in VARIANTS' order."""
    config, objective = record.config, get_objective(record.config.objective)
    if objective.cross_encoder:
        return "cross-encoder"
    if objective.trains_on[0] in NLI_DATA:
        return "NLI first"
    if config.matryoshka_dims:
        return "Matryoshka"
    if config.objective != REFERENCE:
        return "loss"
    if config.pooling != "mean":
        return "pooling"
    if config.precision != "fp32" or config.group_by_length:
        return "precision and batching"
    return "paper recipe" if is_paper_recipe(record) else "epochs"


def lead(gap: float) -> tuple[str, str]:
    """Who leads by a gap (cross-encoder minus bi-encoder), in words, and who that is ("" for neither)."""
    leader = "" if round(gap, 2) == 0 else "cross-encoder" if gap > 0 else "bi-encoder"
    if not leader:
        return fill("results", "cross-vs-bi-tie", difference=format_gain(gap)), leader
    words = fill("results", "cross-vs-bi-lead", leader=leader, gap=f"{abs(gap):.2f}", difference=format_gain(gap))
    return words, leader


def agreement(leader: str, paper_leader: str) -> str:
    """Whether our leader (lead()'s, "" for neither) is the paper's, in a sentence."""
    section = "cross-vs-bi-" + ("agrees" if leader == paper_leader else "differs")
    return fill("results", section, leader=leader) if leader else fill("results", f"{section}-tie")


def cross_against_bi(groups: list[Group]) -> list[str]:
    """Per cross-encoder run: its STSb mean against that of the sts-cosine bi-encoder trained the same way (the one
    with most seeds, as the loss comparison picks it), and who leads, beside the paper's two rows."""
    paper_lead, paper_leader = lead(PAPER_CROSS[0] - PAPER_BI[0])
    if abs(PAPER_CROSS[0] - PAPER_BI[0]) < PAPER_CROSS[1]:  # a lead inside the spread of one model's seeds
        paper_lead = fill("results", "cross-vs-bi-within-spread", lead=paper_lead, spread=f"{PAPER_CROSS[1]:.2f}")
    paragraphs, bi_encoders = [], loss_groups(groups)
    for group in filter(stsb_trained, groups):
        if variant(group[0]) != "cross-encoder" or seed_values(group, "finetuned", STSB) is None:
            continue
        setup, bi = f"{code(comparison_key(group)[0])}, {trained_how(group)}", reference(group, bi_encoders)
        if bi is None:
            paragraphs.append(fill("results", "cross-vs-bi-none", setup=setup))
            continue
        ours, leader = lead(stsb_mean(group) - stsb_mean(bi))
        paragraphs.append(fill("results", "cross-vs-bi", setup=setup, cross=seed_stat(group, "finetuned", STSB),
                               cross_seeds=len(group), bi=seed_stat(bi, "finetuned", STSB), bi_seeds=len(bi),
                               lead=ours, seeds=paper.TABLE2_SEEDS, paper_cross=format_score(*PAPER_CROSS),
                               paper_bi=format_score(*PAPER_BI), paper_lead=paper_lead,
                               agreement=agreement(leader, paper_leader)))
    return [line for paragraph in paragraphs for line in ("", paragraph)]


def nli_table(groups: list[Group]) -> list[str]:
    """Models trained on NLI only (the paper's SBERT-NLI rows of Table 1): STS without STS training."""
    ours = [(describe(group), text(data_label(group[0].config.data_dir)),
             *(seed_stat(group, "finetuned", f"{task}/spearman") for task in STS_COLUMNS), sources(group))
            for group in groups
            if all(data in NLI_DATA for data in get_objective(group[0].config.objective).trains_on)]
    if not ours:
        return []
    theirs = (f"{PAPER_NLI} (bert-base-uncased, SNLI + MultiNLI, 1 epoch)", "paper",
              *(f"{v:.2f}" for v in paper.TABLE1[PAPER_NLI]), "paper, Table 1")
    return [fill("results", "nli"), "", *markdown_table(("setup", "data", *STS_COLUMNS, "source"), [*ours, theirs],
                                                        "ll" + "r" * len(STS_COLUMNS) + "l"), ""]


def ablation_table(groups: list[Group]) -> list[str]:
    # The paper's Table 6 ablates pooling under its own loss: runs of the other losses, or Matryoshka, are not rows.
    ablated = [group for group in groups
               if group[0].config.objective == REFERENCE and not group[0].config.matryoshka_dims]
    rows = []
    for group in sorted(ablated, key=lambda group: (model_label(group[0].config.model), group[0].config.pooling)):
        config = group[0].config
        values = [record.training.best_validation("spearman") for record in group]
        rows.append((code(model_label(config.model)), f"{config.pooling}{speed_options(group[0])}",
                     str(config.epochs), str(len(group)), format_score(*mean_and_std(values)),
                     f"{paper.TABLE6_POOLING_STSB[config.pooling]:.2f}", sources(group)))
    return [fill("results", "ablation"), "", *markdown_table(
        ("model", "pooling", "epochs", "seeds", "validation (ours)", "paper (bert-base-uncased)", "source"), rows,
        "llrrrrl")]


def render_results(records: list[AnyRecord], plots_dir: Path | None) -> str:
    """results/README.md for these records: the gain at a glance first, then the paper's tables in the paper's
    order and what goes past it; plots written to `plots_dir` when given. Each run's own tables are runs.md's."""
    bm25 = [record for record in records if record.kind == BM25_KIND]  # a reference beside the models, where named
    geometry_page, records = bool(geometry_page_records(records)), page_records(records)
    groups = finetune_groups(records)
    sections = [fill("results", "intro", citation=paper.CITATION), "", *summary_section(groups, bm25, plots_dir),
                fill("results", "about"), "", *table1(records), "", *table2(groups), "", *loss_table(groups),
                *nli_table(groups), *ablation_table(groups), "", *retrieval_sections(groups, records, bm25, plots_dir),
                *dimension_table(records), *matryoshka_section(groups, plots_dir), *rerank_section(groups, records),
                fill("results", "runs-link"), ""]
    return "\n".join(sections + ([fill("results", "geometry-link"), ""] if geometry_page else []))


def page_records(records: list[AnyRecord]) -> list[FinetuneRecord | EvaluateRecord]:
    """The records results/README.md and runs.md read: fine-tunes and evaluations. Benchmarks and geometry runs have
    pages of their own; so have evaluations through a post-processing (geometry.md), whose scores are not the model's
    own vectors'."""
    return [record for record in records
            if record.kind in (FINETUNE_KIND, EVALUATE_KIND) and not is_postprocessed(record)]


# ----------------------------------------------------------------------------- runs.md

def per_task_table(group: Group) -> list[str]:
    """A run's gain table (the rows gain_table.py computes for the table the run printed), fewer metrics."""
    rows = [row.cells() for row in gain_rows(group[0].baseline.scores, [record.finetuned.scores for record in group])
            if row.metric in ("spearman", "ndcg@10", "mrr@10", "recall@10", "recall@100")]
    return [fill("results", "every-task", setup=describe(group)), "",
            *markdown_table(("task", "metric", "baseline", "fine-tuned", "gain"), rows, "llrrr")]


def timing_table(records: list[FinetuneRecord | EvaluateRecord]) -> list[str]:
    rows = []
    for record in records:
        hardware = record.environment.hardware
        run = (record_link(record, record.path), hardware.gpu or f"{hardware.device} ({hardware.cpu})",
               str(hardware.cpu_cores))
        if isinstance(record, EvaluateRecord):
            took = minutes(record.wall_seconds)
            rows.append((*run, took, "-", "-", "-", took, commit_label(record.environment.git)))
            continue
        timings, resumed = record.timings, " (resumed: this session's times)" if record.training.resumed_from else ""
        rows.append((run[0] + resumed, *run[1:], minutes(timings.baseline_eval_s), minutes(timings.train_s),
                     f"{record.training.steps_per_s:.2f}", minutes(timings.finetuned_eval_s),
                     minutes(timings.total_s), commit_label(record.environment.git)))
    return [fill("results", "timing"), "", *markdown_table(
        ("run", "device", "cpu cores", "baseline eval", "train", "train steps/s", "fine-tuned eval", "total", "git"),
        rows, "llrrrrrrl")]


def render_runs(records: list[AnyRecord], plots_dir: Path | None) -> str:
    """results/runs.md: every fine-tune's own gain table on each task, with its plots, and how long each run took."""
    records = page_records(records)
    sections = [fill("results", "runs-intro"), ""]
    for group in finetune_groups(records):
        sections += [*per_task_table(group), ""]
        if plots_dir is not None:
            setup = run_folders(group)[0]  # plots are named by what they show and the run (a setup has one)
            for name, title, plot in ((f"gains-{setup}.png", "baseline vs fine-tuned", plot_gains),
                                      (f"validation-{setup}.png", "validation by epoch", plot_validation),
                                      (f"seeds-{setup}.png", "per-seed spread", plot_seed_spread)):
                if plot(group, plots_dir / name):
                    sections.append(f"![{title}](plots/{name})")
            sections.append("")
    return "\n".join([*sections, *timing_table(records), ""])


README_BLOCK = ("<!-- make_tables: headline -->\n", "<!-- /make_tables -->\n")


def readme_headline(records: list[AnyRecord]) -> str:
    """The top-level README's headline: the summary's two sentences, from the same records and code."""
    rows = summary_rows(finetune_groups(page_records(records)), [r for r in records if r.kind == BM25_KIND])
    return summary_sentences(rows) + "\n"


def update_readme_block(readme: Path, block: str) -> None:
    """Replace what stands between the README's make_tables markers."""
    text = readme.read_text(encoding="utf-8")
    start, end = README_BLOCK
    if start not in text or end not in text:
        raise UsageError(f"{readme}: no '{start.strip()}' ... '{end.strip()}' block to fill; restore the markers")
    before, rest = text.split(start, 1)
    write_text_atomic(readme, before + start + block + end + rest.split(end, 1)[1])
