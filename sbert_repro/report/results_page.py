"""results/README.md: the paper's tables regenerated from committed run records, with plots.

Every number here is read from a record.json under results/records/ (written by a real run) or from the
paper (paper.py), and each row says which. The output is deterministic: records are read in sorted order,
numbers are rounded only when printed, and plots carry no timestamps, so the same records give the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sbert_repro.errors import UsageError
from sbert_repro.report import paper
from sbert_repro.report.dimension_table import dimension_table
from sbert_repro.report.gain_table import gain_rows
from sbert_repro.report.labels import commit_label, data_label, format_gain, format_score, mean_and_std, minutes
from sbert_repro.report.loss_table import comparison_key, loss_groups, loss_table, reference, stsb_mean, training
from sbert_repro.report.markdown import STS_AVG, STSB, markdown_table, record_link
from sbert_repro.report.matryoshka_table import matryoshka_section
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
    setting,
    sources,
    speed_options,
)
from sbert_repro.report.rerank_table import rerank_section
from sbert_repro.report.retrieval_table import (
    approximate_index_table,
    plot_retrieval_training,
    retrieval_training_table,
)
from sbert_repro.report.summary_table import is_paper_recipe, summary_rows, summary_section, summary_sentences
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.records import ANN_KIND, BM25_KIND, COST_KIND, GEOMETRY_KIND, PERF_KIND, write_text_atomic

# Trained on STSb: Table 2's rows (a cross-encoder's row stands beside the paper's BERT cross-encoder).
STSB_TRAINED = ("sts-cosine", "nli-then-stsb", "sts-cosent", "sts-angle", "cross-encoder")
NLI_ONLY = ("nli-softmax", "nli-mnrl")


STS_COLUMNS = paper.TABLE1_COLUMNS  # ours are the paper's Table 1 columns


NOT_RUN = "not run here (needs the Hugging Face hub)"


def table1(records: list[dict[str, Any]]) -> list[str]:
    rows, seen = [], set()
    for record in records:
        if record["config"].get("postprocess"):
            continue  # a post-processed baseline (finetune --postprocess) is not a raw model's: geometry.md
        scores = record["scores"] if record["kind"] == "evaluate" else record["baseline"]["scores"]
        config = record["config"]
        cells = [f"{scores[f'{task}/spearman']:.2f}" if f"{task}/spearman" in scores else "-" for task in STS_COLUMNS]
        row_key = (model_label(config["model"]), config["pooling"] + precision_option(record), data_label(config),
                   tuple(cells))
        if row_key in seen or all(cell == "-" for cell in cells):
            continue  # one baseline as printed, however many runs and seeds recorded it
        seen.add(row_key)
        rows.append((f"`{row_key[0]}`", *row_key[1:3], *cells, record_link(record)))
    if not any(r["config"]["model"] == "bert-base-uncased" for r in records):
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


def table2(groups: list[list[dict[str, Any]]]) -> list[str]:
    rows: list[tuple[str | None, ...]] = []
    trained = [group for group in groups if setting(group[0], "objective") in STSB_TRAINED]
    for group in sorted(trained, key=lambda group: VARIANTS.index(variant(group[0]))):
        if not all(STSB in r["finetuned"]["scores"] for r in group):
            continue  # runs that did not score STSb test (e.g. ablation runs scored on validation only)
        base = group[0]["baseline"]["scores"][STSB]
        mean, std = mean_and_std([r["finetuned"]["scores"][STSB] for r in group])
        before = group[0]["baseline"]["scores"].get(STS_AVG)  # one baseline, shared by the seeds
        avg = f"{before:.2f} -> {seed_stat(group, 'finetuned', STS_AVG)}" if before is not None else "-"
        rows.append((variant(group[0]), describe(group), data_label(group[0]["config"]), str(len(group)),
                     f"{base:.2f}", format_score(mean, std), format_gain(mean - base), avg, sources(group)))
    if not any(g[0]["config"]["model"] == "bert-base-uncased" for g in groups):
        rows.append(("paper recipe", "`bert-base-uncased`, mean pooling, 4 epochs (the paper's SBERT-STSb-base)",
                     *("-" for _ in range(6)), NOT_RUN))
    rows += [("paper, bert-base-uncased", name, "paper", str(paper.TABLE2_SEEDS), None, f"{mean:.2f} +- {std:.2f}",
              None, None, "paper, Table 2") for name, (mean, std) in paper.TABLE2.items()]
    header = ("varies", "setup", "data", "seeds", "baseline", "fine-tuned", "gain", "7-task avg before -> after",
              "source")
    return [fill("results", "table2"), "", *markdown_table(header, rows, "lllrrrrll"), *cross_against_bi(groups)]


# Table 2's groups of rows, in order: what a run changes from the paper's recipe.
VARIANTS = ("paper recipe", "epochs", "pooling", "loss", "Matryoshka", "precision and batching", "NLI first",
            "cross-encoder")


def variant(record: dict[str, Any]) -> str:
    """What a run trained on STSb varies from the paper's recipe, the first that applies in VARIANTS' order."""
    objective = setting(record, "objective")
    if objective == "cross-encoder":
        return "cross-encoder"
    if objective == "nli-then-stsb":
        return "NLI first"
    if setting(record, "matryoshka_dims"):
        return "Matryoshka"
    if objective != "sts-cosine":
        return "loss"
    if setting(record, "pooling") != "mean":
        return "pooling"
    if setting(record, "precision") != "fp32" or setting(record, "group_by_length"):
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


def cross_against_bi(groups: list[list[dict[str, Any]]]) -> list[str]:
    """Per cross-encoder run: its STSb mean against that of the sts-cosine bi-encoder trained the same way (the one
    with most seeds, as the loss comparison picks it), and who leads, beside the paper's two rows."""
    paper_cross, paper_bi = (paper.TABLE2[paper.TRAINED_ROW[name]] for name in ("cross-encoder", "sts-cosine"))
    paper_lead, paper_leader = lead(paper_cross[0] - paper_bi[0])
    if abs(paper_cross[0] - paper_bi[0]) < paper_cross[1]:  # a lead inside the spread of one model's seeds
        paper_lead = fill("results", "cross-vs-bi-within-spread", lead=paper_lead, spread=f"{paper_cross[1]:.2f}")
    lines, bi_encoders = [], loss_groups(groups)
    for group in groups:
        if setting(group[0], "objective") != "cross-encoder" or seed_values(group, "finetuned", STSB) is None:
            continue
        setup, bi = f"`{comparison_key(group)[0]}`, {training(group)}", reference(group, bi_encoders)
        if bi is None:
            lines += ["", fill("results", "cross-vs-bi-none", setup=setup)]
            continue
        ours, leader = lead(stsb_mean(group) - stsb_mean(bi))
        lines += ["", fill("results", "cross-vs-bi", setup=setup, cross=seed_stat(group, "finetuned", STSB),
                           cross_seeds=len(group), bi=seed_stat(bi, "finetuned", STSB), bi_seeds=len(bi), lead=ours,
                           seeds=paper.TABLE2_SEEDS, paper_cross=format_score(*paper_cross),
                           paper_bi=format_score(*paper_bi), paper_lead=paper_lead,
                           agreement=agreement(leader, paper_leader))]
    return lines


def nli_table(groups: list[list[dict[str, Any]]]) -> list[str]:
    """Models trained on NLI only (the paper's SBERT-NLI rows of Table 1): STS without STS training."""
    nli_groups = [g for g in groups if setting(g[0], "objective") in NLI_ONLY]
    if not nli_groups:
        return []
    rows = [(describe(group), data_label(group[0]["config"]),
             *(seed_stat(group, "finetuned", f"{task}/spearman") for task in STS_COLUMNS), sources(group))
            for group in nli_groups]
    rows.append(("SBERT-NLI-base (bert-base-uncased, SNLI + MultiNLI, 1 epoch)", "paper",
                 *(f"{v:.2f}" for v in paper.TABLE1["SBERT-NLI-base"]), "paper, Table 1"))
    return [fill("results", "nli"), "", *markdown_table(("setup", "data", *STS_COLUMNS, "source"), rows,
                                                        "ll" + "r" * len(STS_COLUMNS) + "l"), ""]


def per_task_table(group: list[dict[str, Any]]) -> list[str]:
    """A run's gain table (the rows gain_table.py computes for the table the run printed), fewer metrics."""
    rows = [(row["task"], row["metric"], f"{row['baseline']:.2f}", format_score(row["finetuned"], row["finetuned_std"]),
             format_gain(row["gain"]))
            for row in gain_rows(group[0]["baseline"]["scores"], [record["finetuned"]["scores"] for record in group])
            if row["metric"] in ("spearman", "ndcg@10", "mrr@10", "recall@10", "recall@100")]
    return [fill("results", "every-task", setup=describe(group)), "",
            *markdown_table(("task", "metric", "baseline", "fine-tuned", "gain"), rows, "llrrr")]


def ablation_table(groups: list[list[dict[str, Any]]]) -> list[str]:
    # The paper's Table 6 ablates pooling under its own loss: runs of the other losses, or Matryoshka, are not rows.
    ablated = [g for g in groups if setting(g[0], "objective") == "sts-cosine" and not setting(g[0], "matryoshka_dims")]
    rows = []
    for group in sorted(ablated, key=lambda g: (model_label(g[0]["config"]["model"]), g[0]["config"]["pooling"])):
        config = group[0]["config"]
        values = [r["training"]["best_validation_spearman"] for r in group]
        rows.append((f"`{model_label(config['model'])}`", f"{config['pooling']}{speed_options(group[0])}",
                     str(config["epochs"]), str(len(group)), format_score(*mean_and_std(values)),
                     f"{paper.TABLE6_POOLING_STSB[config['pooling']]:.2f}", sources(group)))
    return [fill("results", "ablation"), "", *markdown_table(
        ("model", "pooling", "epochs", "seeds", "validation (ours)", "paper (bert-base-uncased)", "source"), rows,
        "llrrrrl")]


def retrieval_table(groups: list[list[dict[str, Any]]]) -> list[str]:
    rows = []
    for group in groups:
        if setting(group[0], "objective") == "cross-encoder-retrieval":
            continue  # a re-ranker's scores re-rank another model's search: its own section says what they are
        base = group[0]["baseline"]["scores"]
        for task in [key.split("/")[0] for key in base if key.endswith("/ndcg@10")]:  # registry tasks and folders
            values = seed_values(group, "finetuned", f"{task}/ndcg@10")
            if values is None:
                continue
            after = mean_and_std(values)
            rows.append((describe(group), task, f"{base[f'{task}/ndcg@10']:.2f}", format_score(*after),
                         format_gain(after[0] - base[f"{task}/ndcg@10"]), f"{base[f'{task}/recall@10']:.2f}",
                         seed_stat(group, "finetuned", f"{task}/recall@10")))
    return [fill("results", "retrieval"), "", *markdown_table(
        ("setup", "task", "nDCG@10 before", "nDCG@10 after", "gain", "Recall@10 before", "Recall@10 after"), rows,
        "llrrrrr")]


def timing_table(records: list[dict[str, Any]]) -> list[str]:
    rows = []
    for record in records:
        hardware = record["environment"]["hardware"]
        device = hardware.get("gpu") or f"{hardware['device']} ({hardware['cpu']})"
        run = record_link(record, record["_path"])
        commit = commit_label(record["environment"]["git"])
        if record["kind"] == "evaluate":
            took = minutes(record["wall_seconds"])
            rows.append((run, device, str(hardware["cpu_cores"]), took, "-", "-", "-", took, commit))
            continue
        timings = record["timings"]
        resumed = " (resumed: this session's times)" if record["training"].get("resumed_from") else ""
        rows.append((run + resumed, device, str(hardware["cpu_cores"]), minutes(timings["baseline_eval_s"]),
                     minutes(timings["train_s"]), f"{record['training']['steps_per_s']:.2f}",
                     minutes(timings["finetuned_eval_s"]), minutes(timings["total_s"]), commit))
    return [fill("results", "timing"), "", *markdown_table(
        ("run", "device", "cpu cores", "baseline eval", "train", "train steps/s", "fine-tuned eval", "total", "git"),
        rows, "llrrrrrrl")]


def render_results(records: list[dict[str, Any]], plots_dir: Path | None) -> str:
    """results/README.md for these records: the gain at a glance first, then the paper's tables in the paper's
    order and what goes past it; plots written to `plots_dir` when given. Each run's own tables are runs.md's."""
    geometry_page = bool(geometry_page_records(records))
    bm25 = [r for r in records if r["kind"] == BM25_KIND]  # a reference beside the models, shown where it is named
    records = page_records(records)
    groups = finetune_groups(records)
    sections = [fill("results", "intro", citation=paper.CITATION), "",
                *summary_section(groups, bm25, plots_dir),
                fill("results", "about"), "", *table1(records), "", *table2(groups), "",
                *loss_table(groups), *nli_table(groups), *ablation_table(groups), "", *retrieval_table(groups), ""]
    if trained_for_retrieval := retrieval_training_table(groups, bm25):
        sections += [*trained_for_retrieval, ""]
        if plots_dir is not None and plot_retrieval_training(groups, plots_dir / "retrieval-training.png"):
            sections += ["![trained for retrieval](plots/retrieval-training.png)", ""]
        if approximate := approximate_index_table(records):
            sections += [*approximate, ""]
    if by_dimension := dimension_table(records):
        sections += [*by_dimension, ""]
    sections += matryoshka_section(groups, plots_dir)
    sections += rerank_section(groups, records)
    sections += [fill("results", "runs-link"), ""]
    if geometry_page:
        sections += [fill("results", "geometry-link"), ""]
    return "\n".join(sections)


def page_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records results/README.md and runs.md read: benchmarks and geometry runs have pages of their own; so have
    evaluations through a post-processing (geometry.md), whose scores are not the model's own vectors'."""
    return [record for record in records
            if record["kind"] not in (ANN_KIND, PERF_KIND, COST_KIND, GEOMETRY_KIND, BM25_KIND)
            and not is_postprocessed(record)]


def render_runs(records: list[dict[str, Any]], plots_dir: Path | None) -> str:
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


def readme_headline(records: list[dict[str, Any]]) -> str:
    """The top-level README's headline: the summary's two sentences, from the same records and code."""
    rows = summary_rows(finetune_groups(page_records(records)), [r for r in records if r["kind"] == BM25_KIND])
    return summary_sentences(rows) + "\n"


def update_readme_block(readme: Path, block: str) -> None:
    """Replace what stands between the README's make_tables markers."""
    text = readme.read_text(encoding="utf-8")
    start, end = README_BLOCK
    if start not in text or end not in text:
        raise UsageError(f"{readme}: no '{start.strip()}' ... '{end.strip()}' block to fill; restore the markers")
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    write_text_atomic(readme, before + start + block + end + after)
