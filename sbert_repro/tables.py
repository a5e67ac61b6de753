"""results/: the paper's tables regenerated from committed run records, with plots.

Every number here is read from a record.json under results/records/ (written by a real run) or from the
paper (paper.py), and each row says which. The output is deterministic: records are read in sorted order,
numbers are rounded only when printed, and plots carry no timestamps, so the same records give the same bytes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sbert_repro import paper
from sbert_repro.config import BEFORE_SPEED_OPTIONS, RunConfig
from sbert_repro.errors import UsageError
from sbert_repro.folders import fresh_staging, kill_point, removed_on_failure
from sbert_repro.records import RECORD, write_text_atomic
from sbert_repro.report import format_gain, format_score, mean_and_std
from sbert_repro.tasks import DEFAULT_RETRIEVAL_TASKS, TABLE1_STS_TASKS

logger = logging.getLogger(__name__)


# Config fields that tell runs apart; seeds and where the outputs went do not.
GROUP_FIELDS = ("model", "pooling", "data_dir", "objective", "epochs", "nli_task", "nli_split", "nli_epochs",
                "concat", "batch_size", "lr", "warmup_ratio", "weight_decay", "max_seq_length", "max_train_samples",
                "eval_max_seq_length", "save_steps", "precision", "group_by_length", "retrieval_split")
# Records written before a field existed ran with its default (the speed options: with what they replaced).
DEFAULTS = {**RunConfig().to_dict(), **BEFORE_SPEED_OPTIONS}
STSB_TRAINED = ("sts-cosine", "nli-then-stsb")
STS_COLUMNS = (*TABLE1_STS_TASKS, "sts-avg")
NOT_RUN = "not run here (needs the Hugging Face hub)"


# ----------------------------------------------------------------------------- records

def load_records(records_dir: Path) -> list[dict[str, Any]]:
    """Every finished record.json below `records_dir`, in path order, each with its relative path under
    "_path". A record of a run that was killed or is still going (status "incomplete") is skipped, with a
    warning: its numbers are not final."""
    records = []
    for path in sorted(records_dir.rglob(RECORD)):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise UsageError(f"{path}: not a readable run record ({error}); restore it or remove it") from None
        if record.get("status", "complete") != "complete":
            logger.warning("skipping %s: the run did not finish (status %r)", path, record.get("status"))
            continue
        record["_path"] = path.parent.relative_to(records_dir).as_posix()
        records.append(record)
    return records


def add_run(run_dir: Path, records_dir: Path) -> list[Path]:
    """Copy a run's records (record.json, and an evaluation's scores.md; never model weights) into
    records_dir/<run name>/. The tables a run printed are not copied: results/README.md regenerates them.

    The copy is made in a folder beside records_dir and renamed into place, so a killed --add leaves no half a
    run; adding the same records again (a retry after a kill) is accepted, other records under the name are not."""
    sources = sorted(run_dir.rglob(RECORD))
    if not sources:
        raise UsageError(f"--add {run_dir}: no {RECORD} in it; give a finished run folder")
    target_root = records_dir / run_dir.resolve().name
    files = {source.parent.relative_to(run_dir) / name: source.parent / name
             for source in sources for name in (RECORD, "scores.md") if (source.parent / name).is_file()}
    if target_root.exists():
        if all((target_root / relative).is_file() and (target_root / relative).read_bytes() == source.read_bytes()
               for relative, source in files.items()):
            return [target_root / source.parent.relative_to(run_dir) for source in sources]
        raise UsageError(f"--add {run_dir}: {target_root} already exists; records are never overwritten")
    staging = fresh_staging(records_dir.parent / f"{target_root.name}.adding", "--add")  # outside records/
    with removed_on_failure(staging):
        for relative, source in files.items():
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, staging / relative)
        records_dir.mkdir(parents=True, exist_ok=True)
        os.rename(staging, target_root)
    return [target_root / source.parent.relative_to(run_dir) for source in sources]


def model_label(model: str) -> str:
    """A hub id as it is; a local folder by its last two path parts (the last alone is often just 'model')."""
    if not model.startswith(("/", ".", "~")) and model.count("/") <= 1:
        return model
    return "/".join(Path(model).parts[-2:])


def data_label(config: dict[str, Any]) -> str:
    return f"local copies ({Path(config['data_dir']).name}/)" if config.get("data_dir") else "Hugging Face hub"


def setting(record: dict[str, Any], name: str) -> Any:
    return record["config"].get(name, DEFAULTS[name])


def group_key(record: dict[str, Any]) -> tuple:
    return tuple(str(setting(record, name)) for name in GROUP_FIELDS)


def finetune_groups(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Fine-tune records of the same setup (all but the seed), each group sorted by seed."""
    groups: dict[tuple, dict[int, dict[str, Any]]] = defaultdict(dict)
    for record in records:
        if record["kind"] != "finetune":
            continue
        seeds = groups[group_key(record)]
        seed = record["config"]["seed"]
        if seed in seeds:  # the same seed twice is one measurement, not two
            logger.warning("records/%s repeats seed %d of records/%s; counting it once", record["_path"], seed,
                           seeds[seed]["_path"])
            continue
        seeds[seed] = record
    return [[seeds[seed] for seed in sorted(seeds)] for _, seeds in sorted(groups.items())]


def describe(group: list[dict[str, Any]]) -> str:
    record = group[0]
    objective = setting(record, "objective")
    nli = f"{setting(record, 'nli_task')} {setting(record, 'nli_split')}, {setting(record, 'nli_epochs')} epoch(s)"
    training = {"sts-cosine": f"STSb {setting(record, 'epochs')} epoch(s)",
                # "|" would end a Markdown table cell
                "nli-softmax": f"NLI softmax ({setting(record, 'concat')}) on {nli}".replace("|", "\\|"),
                "nli-mnrl": f"NLI ranking loss on {nli}",
                "nli-then-stsb": f"NLI softmax on {nli}, then STSb {setting(record, 'epochs')} epoch(s)"}[objective]
    first = setting(record, "max_train_samples")
    samples = f", first {first} train pairs" if first else ""
    samples += speed_options(record)
    return (f"`{model_label(setting(record, 'model'))}`, {setting(record, 'pooling')} pooling, {training}{samples}, "
            f"seeds {', '.join(str(r['config']['seed']) for r in group)}")


def precision_option(record: dict[str, Any]) -> str:
    """', bf16' for a run in another number format than the paper's fp32; '' for fp32."""
    return f", {setting(record, 'precision')}" if setting(record, "precision") != "fp32" else ""


def speed_options(record: dict[str, Any]) -> str:
    """', bf16, length-grouped batches' for a run that used them; '' for the paper's fp32 and random batches."""
    return precision_option(record) + (", length-grouped batches" if setting(record, "group_by_length") else "")


def run_folders(group: list[dict[str, Any]]) -> list[str]:
    """The folders under records/ that a group's seeds come from, in order."""
    return list(dict.fromkeys(Path(record["_path"]).parts[0] for record in group))


def sources(group: list[dict[str, Any]], prefix: str = "records") -> str:
    """Links to the run folders a group's seeds come from."""
    return ", ".join(f"[records]({prefix}/{folder}/)" for folder in run_folders(group))


def seed_values(group: list[dict[str, Any]], stage: str, key: str) -> list[float] | None:
    """`key` of every seed in the group, or None where some seed did not score it: a missing score is left
    out, never averaged in as 0."""
    values = [r[stage]["scores"].get(key) for r in group]
    return None if None in values else values


def _stat(group: list[dict[str, Any]], stage: str, key: str) -> str:
    values = seed_values(group, stage, key)
    return "-" if values is None else format_score(*mean_and_std(values))


# ----------------------------------------------------------------------------- tables

def table1(records: list[dict[str, Any]]) -> list[str]:
    lines = ["## Table 1: STS without STS training (Spearman x100)", "",
             "Cosine similarity of sentence embeddings against gold scores, test splits. Our rows are "
             "`sbert-repro evaluate` runs and the baselines (before training) of the fine-tune runs.", "",
             "| model | pooling | data | " + " | ".join(STS_COLUMNS) + " | source |",
             "|---|---|---|" + "---:|" * len(STS_COLUMNS) + "---|"]
    seen = set()
    for record in records:
        scores = record["scores"] if record["kind"] == "evaluate" else record["baseline"]["scores"]
        config = record["config"]
        row_key = (model_label(config["model"]), config["pooling"] + precision_option(record), data_label(config),
                   tuple(scores.get(f"{task}/spearman") for task in STS_COLUMNS))
        if row_key in seen or not any(f"{task}/spearman" in scores for task in STS_COLUMNS):
            continue  # the same baseline recorded by every seed of a run is one row
        seen.add(row_key)
        cells = [f"{scores[f'{task}/spearman']:.2f}" if f"{task}/spearman" in scores else "-" for task in STS_COLUMNS]
        lines.append(f"| `{row_key[0]}` | {row_key[1]} | {row_key[2]} | " + " | ".join(cells) +
                     f" | [record](records/{record['_path']}/{RECORD}) |")
    ran_bert = any(r["config"]["model"] == "bert-base-uncased" for r in records)
    for pooling, row in paper.TABLE1_ROW_FOR_POOLING.items():
        if not ran_bert:
            lines.append(f"| `bert-base-uncased` | {pooling} | - | " + " | ".join("-" for _ in STS_COLUMNS) +
                         f" | {NOT_RUN}; paper: {row} |")
    for name, values in paper.TABLE1.items():
        lines.append(f"| {name} | | paper | " + " | ".join(f"{v:.2f}" for v in values) + " | paper, Table 1 |")
    return lines


def table2(groups: list[list[dict[str, Any]]]) -> list[str]:
    lines = ["## Table 2: trained on STSb train, STSb test Spearman x100", "",
             "Mean +- sample standard deviation over seeds (the paper: 10 seeds). Baseline: the same model before "
             "fine-tuning.", "",
             "| setup | data | seeds | baseline | fine-tuned | gain | 7-task avg before -> after | source |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for group in groups:
        config = group[0]["config"]
        if setting(group[0], "objective") not in STSB_TRAINED:
            continue
        if not all("stsb/spearman" in r["finetuned"]["scores"] for r in group):
            continue  # runs that did not score STSb test (e.g. ablation runs scored on validation only)
        base = group[0]["baseline"]["scores"]["stsb/spearman"]
        tuned = [r["finetuned"]["scores"]["stsb/spearman"] for r in group]
        mean, std = mean_and_std(tuned)
        before = group[0]["baseline"]["scores"].get("sts-avg/spearman")  # one baseline, shared by the seeds
        avg = f"{before:.2f} -> {_stat(group, 'finetuned', 'sts-avg/spearman')}" if before is not None else "-"
        lines.append(f"| {describe(group)} | {data_label(config)} | {len(group)} | {base:.2f} | "
                     f"{format_score(mean, std)} | {format_gain(mean - base)} | {avg} | "
                     f"{sources(group)} |")
    if not any(g[0]["config"]["model"] == "bert-base-uncased" for g in groups):
        lines.append(f"| `bert-base-uncased`, mean pooling, 4 epochs (the paper's SBERT-STSb-base) | - | - | - | - | "
                     f"- | - | {NOT_RUN} |")
    for name, (mean, std) in paper.TABLE2.items():
        lines.append(f"| {name} | paper | 10 | | {mean:.2f} +- {std:.2f} | | | paper, Table 2 |")
    return lines


def nli_table(groups: list[list[dict[str, Any]]]) -> list[str]:
    """Models trained on NLI only (the paper's SBERT-NLI rows of Table 1): STS without STS training."""
    nli_groups = [g for g in groups if setting(g[0], "objective") not in STSB_TRAINED]
    if not nli_groups:
        return []
    lines = ["## Trained on NLI only (paper Table 1, SBERT-NLI rows): STS Spearman x100", "",
             "Fine-tuned scores, mean +- std over seeds; the baseline is the same model before training.", "",
             "| setup | data | " + " | ".join(STS_COLUMNS) + " | source |",
             "|---|---|" + "---:|" * len(STS_COLUMNS) + "---|"]
    for group in nli_groups:
        cells = [_stat(group, "finetuned", f"{task}/spearman") for task in STS_COLUMNS]
        lines.append(f"| {describe(group)} | {data_label(group[0]['config'])} | " + " | ".join(cells) +
                     f" | {sources(group)} |")
    lines.append("| SBERT-NLI-base (bert-base-uncased, SNLI + MultiNLI, 1 epoch) | paper | " +
                 " | ".join(f"{v:.2f}" for v in paper.TABLE1["SBERT-NLI-base"]) + " | paper, Table 1 |")
    return lines + [""]


def per_task_table(group: list[dict[str, Any]]) -> list[str]:
    lines = [f"### Every task: {describe(group)}", "",
             "| task | metric | baseline | fine-tuned | gain |", "|---|---|---:|---:|---:|"]
    base = group[0]["baseline"]["scores"]
    for key in base:
        task, metric = key.split("/", 1)
        if metric not in ("spearman", "ndcg@10", "mrr@10", "recall@10", "recall@100"):
            continue
        values = seed_values(group, "finetuned", key)
        if values is None:
            continue
        mean, std = mean_and_std(values)
        lines.append(f"| {task} | {metric} | {base[key]:.2f} | {format_score(mean, std)} | "
                     f"{format_gain(mean - base[key])} |")
    return lines


def ablation_table(groups: list[list[dict[str, Any]]]) -> list[str]:
    lines = ["## Pooling ablation (paper Table 6): trained on STSb, STSb validation Spearman x100", "",
             "The best epoch's validation score of each seed (the checkpoint the run keeps), mean +- std.", "",
             "| model | pooling | epochs | seeds | validation (ours) | paper (bert-base-uncased) | source |",
             "|---|---|---:|---:|---:|---:|---|"]
    ablated = [g for g in groups if setting(g[0], "objective") == "sts-cosine"]
    for group in sorted(ablated, key=lambda g: (model_label(g[0]["config"]["model"]), g[0]["config"]["pooling"])):
        config = group[0]["config"]
        values = [r["training"]["best_validation_spearman"] for r in group]
        lines.append(f"| `{model_label(config['model'])}` | {config['pooling']}{speed_options(group[0])} | "
                     f"{config['epochs']} | {len(group)} | "
                     f"{format_score(*mean_and_std(values))} | {paper.TABLE6_POOLING_STSB[config['pooling']]:.2f} | "
                     f"{sources(group)} |")
    return lines


def retrieval_table(groups: list[list[dict[str, Any]]]) -> list[str]:
    lines = ["## Retrieval before and after fine-tuning (exact FAISS inner-product search)", "",
             "| setup | task | nDCG@10 before | nDCG@10 after | gain | Recall@10 before | Recall@10 after |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for group in groups:
        base = group[0]["baseline"]["scores"]
        for task in [key.split("/")[0] for key in base if key.endswith("/ndcg@10")]:  # registry tasks and folders
            values = seed_values(group, "finetuned", f"{task}/ndcg@10")
            if values is None:
                continue
            after = mean_and_std(values)
            lines.append(f"| {describe(group)} | {task} | {base[f'{task}/ndcg@10']:.2f} | {format_score(*after)} | "
                         f"{format_gain(after[0] - base[f'{task}/ndcg@10'])} | {base[f'{task}/recall@10']:.2f} | "
                         f"{_stat(group, 'finetuned', f'{task}/recall@10')} |")
    return lines


def timing_table(records: list[dict[str, Any]]) -> list[str]:
    lines = ["## How long the runs took", "",
             "Wall-clock time of each stage. The machine was at times shared with other work (the test suite, "
             "other runs), which slows a run without changing its scores; where the seeds of one run differ "
             "much in time, the fastest is the closest to an unshared machine.", "",
             "| run | device | cpu cores | baseline eval | train | train steps/s | fine-tuned eval | total | git |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for record in records:
        hardware = record["environment"]["hardware"]
        device = hardware.get("gpu") or f"{hardware['device']} ({hardware['cpu']})"
        git = record["environment"]["git"]
        commit = _commit_label(git)
        if record["kind"] == "evaluate":
            lines.append(f"| [{record['_path']}](records/{record['_path']}/{RECORD}) | {device} | "
                         f"{hardware['cpu_cores']} | {_minutes(record['wall_seconds'])} | - | - | - | "
                         f"{_minutes(record['wall_seconds'])} | {commit} |")
            continue
        timings = record["timings"]
        resumed = " (resumed: this session's times)" if record["training"].get("resumed_from") else ""
        lines.append(f"| [{record['_path']}](records/{record['_path']}/{RECORD}){resumed} | {device} | "
                     f"{hardware['cpu_cores']} | {_minutes(timings['baseline_eval_s'])} | "
                     f"{_minutes(timings['train_s'])} | {record['training']['steps_per_s']:.2f} | "
                     f"{_minutes(timings['finetuned_eval_s'])} | {_minutes(timings['total_s'])} | {commit} |")
    return lines


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _commit_label(git: dict[str, Any]) -> str:
    return (git.get("commit") or "?")[:10] + (" (dirty)" if git.get("dirty") else "")


def _machine_label(hardware: dict[str, Any]) -> str:
    return hardware.get("gpu") or f"{hardware['cpu_cores']} CPU cores ({hardware['cpu']})"


# ----------------------------------------------------------------------------- plots

def plot_gains(group: list[dict[str, Any]], path: Path) -> bool:
    """Per-task bars, baseline vs fine-tuned (mean, std as error bars)."""
    import matplotlib.pyplot as plt

    base = group[0]["baseline"]["scores"]
    keys = [k for k in base if (k.endswith("/spearman") or k.endswith("/ndcg@10"))
            and all(k in r["finetuned"]["scores"] for r in group)]  # tasks every seed scored
    after = [mean_and_std([r["finetuned"]["scores"][k] for r in group]) for k in keys]
    figure, axes = plt.subplots(figsize=(max(6, 0.9 * len(keys)), 4))
    positions = range(len(keys))
    axes.bar([p - 0.2 for p in positions], [base[k] for k in keys], width=0.4, label="baseline")
    axes.bar([p + 0.2 for p in positions], [m for m, _ in after], width=0.4, yerr=[s or 0 for _, s in after],
             label="fine-tuned", capsize=3)
    for position, key, (mean, _) in zip(positions, keys, after, strict=True):
        axes.text(position, max(base[key], mean) + 1.5, format_gain(mean - base[key]), ha="center", fontsize=7)
    axes.set_ylim(0, 105)
    axes.set_xticks(list(positions), [k.replace("/", "\n") for k in keys], fontsize=8)
    axes.set_ylabel("score x100 (Spearman / nDCG@10)")
    axes.set_title(_plot_title(group), fontsize=8)
    axes.legend()
    return _save(figure, path)


def plot_validation(group: list[dict[str, Any]], path: Path) -> bool:
    """STSb validation Spearman after each epoch, one line per seed."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for record in group:
        history = record["training"]["validation_history"]
        axes.plot([h["epoch"] for h in history], [h["validation_spearman"] for h in history], marker="o",
                  label=f"seed {record['config']['seed']}")
    axes.set_xlabel("epoch")
    axes.set_ylabel("STSb validation Spearman x100")
    axes.set_title(_plot_title(group), fontsize=8)
    axes.legend(fontsize=7)
    return _save(figure, path)


def plot_seed_spread(group: list[dict[str, Any]], path: Path) -> bool:
    """STSb test Spearman of each seed, against the baseline (runs that scored STSb test)."""
    import matplotlib.pyplot as plt

    if not all("stsb/spearman" in r["finetuned"]["scores"] for r in group):
        return False
    figure, axes = plt.subplots(figsize=(6, 3))
    values = [r["finetuned"]["scores"]["stsb/spearman"] for r in group]
    axes.scatter(values, [0] * len(values), label="fine-tuned, one per seed")
    axes.axvline(group[0]["baseline"]["scores"]["stsb/spearman"], color="grey", linestyle="--", label="baseline")
    axes.set_yticks([])
    axes.set_xlabel("STSb test Spearman x100")
    axes.set_title(_plot_title(group), fontsize=8)
    axes.legend(fontsize=7)
    return _save(figure, path)


def _plot_title(group: list[dict[str, Any]]) -> str:
    return describe(group).replace("`", "").replace("\\|", "|")  # plain text, not Markdown


def _save(figure: Any, path: Path) -> bool:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    # No metadata: a PNG's bytes then depend only on what is drawn.
    figure.savefig(temporary, format="png", dpi=100, metadata={"Software": None}, bbox_inches="tight")
    plt.close(figure)
    temporary.replace(path)
    return True


# ----------------------------------------------------------------------------- the whole page

INTRO = """# Results

Regenerated by `python scripts/make_tables.py` from the run records in [records/](records/) (one
`record.json` per run and seed: full config, seed, package versions, hardware, git commit, scores, timings).
Do not edit by hand. Paper: {citation}.

**What the rows measure.** This repository's machines cannot reach the Hugging Face hub, so the paper's
model, `bert-base-uncased`, has not been run here: its rows show the paper's values and say so. The runs here
use all-MiniLM-L6-v2, a model that is *already* trained for sentence similarity (on over a billion pairs). Its
baseline is therefore strong, and fine-tuning it on STSb measures what the cosine loss adds to a good model,
not the paper's jump from raw BERT. The harness itself is checked against published numbers: on these data
copies it gives that model's MTEB scores (STSb test 82.03, SciFact nDCG@10 64.51; see the test suite).

**NLI rows.** The SNLI and MultiNLI training sets (about 940k pairs) are not on these machines; the NLI runs
here train on SNLI's validation split (9,842 pairs) and measure the code path at small scale, not the paper's
SBERT-NLI. On a model already tuned for similarity, the softmax classification objective pulls the
embeddings towards what separates the three labels and costs STS accuracy, while the ranking loss keeps it:
the paper's own observation that NLI training helps holds for raw BERT, not for a model past that point.
"""


def render(records: list[dict[str, Any]], plots_dir: Path | None) -> str:
    """results/README.md for these records; plots written to `plots_dir` when given."""
    # benchmarks have pages of their own
    records = [record for record in records if record["kind"] not in (ANN_KIND, PERF_KIND)]
    groups = finetune_groups(records)
    sections = [INTRO.format(citation=paper.CITATION).rstrip(), "", *table1(records), "", *table2(groups), "",
                *nli_table(groups)]
    for index, group in enumerate(groups, start=1):
        sections += [*per_task_table(group), ""]
        if plots_dir is not None:
            for name, title, plot in ((f"gains-{index}.png", "baseline vs fine-tuned", plot_gains),
                                      (f"validation-{index}.png", "validation by epoch", plot_validation),
                                      (f"seeds-{index}.png", "per-seed spread", plot_seed_spread)):
                if plot(group, plots_dir / name):
                    sections.append(f"![{title}](plots/{name})")
            sections.append("")
    sections += [*ablation_table(groups), "", *retrieval_table(groups), "", *timing_table(records), ""]
    return "\n".join(sections)


README_BLOCK = ("<!-- make_tables: timings -->\n", "<!-- /make_tables -->\n")


def readme_timings(records: list[dict[str, Any]]) -> str:
    """The top-level README's "how long it takes" lines, one per fine-tune run, from its records."""
    lines = []
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)  # one line per run: its own seeds and tasks
    for record in records:
        if record["kind"] == "finetune":
            runs[Path(record["_path"]).parts[0]].append(record)
    for group in runs.values():
        hardware = group[0]["environment"]["hardware"]
        device = _machine_label(hardware)
        # Data loading, model building and the baseline happen once per run; training and re-scoring per seed.
        shared = sum(group[0]["timings"][stage] for stage in ("load_data_s", "build_model_s", "baseline_eval_s"))
        per_seed = mean_and_std([sum(r["timings"][stage] for stage in ("train_s", "finetuned_eval_s", "save_model_s"))
                                 for r in group])[0]
        train = mean_and_std([r["timings"]["train_s"] for r in group])[0]
        steps = mean_and_std([r["training"]["steps_per_s"] for r in group])[0]
        config = group[0]["config"]
        scored = f"{len(config['sts_tasks'])} STS and {len(config['retrieval_tasks'])} retrieval tasks"
        lines.append(f"- {describe(group)}, {scored} scored before and after, on {device}: "
                     f"{_minutes(shared)} for data and the baseline, then {_minutes(per_seed)} per seed, of which "
                     f"training {_minutes(train)} ({steps:.2f} steps/s); "
                     f"{sources(group, 'results/records')}.")
    return "".join(line + "\n" for line in lines)


def update_readme_block(readme: Path, block: str) -> None:
    """Replace what stands between the README's make_tables markers."""
    text = readme.read_text(encoding="utf-8")
    start, end = README_BLOCK
    if start not in text or end not in text:
        raise UsageError(f"{readme}: no '{start.strip()}' ... '{end.strip()}' block to fill; restore the markers")
    before, rest = text.split(start, 1)
    after = rest.split(end, 1)[1]
    write_text_atomic(readme, before + start + block + end + after)


# ----------------------------------------------------------------------------- retrieval at scale (benchmarks/ann.py)

ANN_KIND = "ann-benchmark"
TARGET_RECALL = 0.95


def best_at_target_recall(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The fastest approximate setting with recall@10 >= 0.95 against exact search, with its speed-up."""
    good = [p for p in points if p["index"] != "Flat" and p["recall@10_vs_exact"] >= TARGET_RECALL]
    if not good:
        return None
    best = max(good, key=lambda p: p["queries_per_s"])
    return {**best, "speedup_over_exact": best["queries_per_s"] / best["exact_queries_per_s"]}


def _knobs(parameters: dict[str, int]) -> str:
    return ", ".join(f"{name}={value}" for name, value in parameters.items()) or "-"


def render_ann(records: list[dict[str, Any]], plots_dir: Path | None) -> str:
    """results/ann.md: each ANN benchmark's speed/recall table and plot, and SciFact exact vs approximate."""
    lines = ["# Retrieval at scale: approximate FAISS search against exact search", "",
             "Regenerated by `python scripts/make_tables.py` from the records `benchmarks/ann.py` wrote. "
             "Do not edit by hand. Recall@10 is the share of exact (Flat) search's top 10 that the index "
             "returns in its top 10, on the same queries; queries/s is one batch of all queries, on the "
             "machine named. PQ indexes keep 64-byte codes instead of the vectors, so their recall stops "
             "where the codes' loss puts it, however many lists are probed (a re-ranking stage, e.g. "
             "`IVF4096,PQ64,RFlat`, lifts it but keeps the full vectors too).", ""]
    for number, record in enumerate(records, start=1):
        hardware, vectors = record["environment"]["hardware"], record["vectors"]
        git = record["environment"]["git"]
        commit = _commit_label(git)
        machine = _machine_label(hardware)
        clusters = record["config"].get("clusters", 1)
        drawn = "one Gaussian, no clusters" if clusters == 1 else f"a mixture of {clusters} Gaussians"
        lines += [f"## {vectors['rows']:,} vectors, {vectors['dim']}-d ({drawn}), on {machine}", "",
                  f"Vectors: {vectors['derived_from']}. {vectors['queries']:,} queries drawn the same way. "
                  f"faiss-cpu {record['environment']['packages'].get('faiss-cpu')}, commit {commit}, "
                  f"[record](records/{record['_path']}/{RECORD}); the benchmark took "
                  f"{_minutes(record['wall_seconds'])}.", ""]
        best = best_at_target_recall(record["large"])
        if best:
            lines += [f"**Fastest setting at recall@10 >= {TARGET_RECALL}: `{best['index']}` "
                      f"({_knobs(best['search_parameters'])}), {best['queries_per_s']:,.0f} queries/s, "
                      f"{best['speedup_over_exact']:.1f}x exact search ({best['exact_queries_per_s']:,.0f} "
                      f"queries/s).**", ""]
        else:
            lines += [f"No setting reached recall@10 >= {TARGET_RECALL}.", ""]
        lines += ["| index | search knob | recall@10 | queries/s | speed-up | build | bytes/vector |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for point in record["large"]:
            build = _minutes(point["build_s"]) if point["index"] != "Flat" else "-"
            lines.append(f"| `{point['index']}` | {_knobs(point['search_parameters'])} | "
                         f"{point['recall@10_vs_exact']:.3f} | {point['queries_per_s']:,.0f} | "
                         f"{point['queries_per_s'] / point['exact_queries_per_s']:.1f}x | {build} | "
                         f"{point['bytes_per_vector']:,.0f} |")
        if plots_dir is not None and plot_speed_recall(record, plots_dir / f"ann-{number}.png"):
            lines += ["", f"![queries/s against recall@10](plots/ann-{number}.png)"]
        lines += ["", f"### SciFact: exact against approximate nDCG@10 (`{model_label(record['config']['model'])}`)",
                  "", "| index | search knob | nDCG@10 | exact nDCG@10 | change | recall@10 | queries/s | "
                  "exact queries/s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for point in record["scifact"]:
            knob = _knobs({k: point[k] for k in ("nprobe", "ef_search") if k in point})
            lines.append(f"| `{point['index']}` | {knob} | {point['ndcg@10']:.2f} | {point['exact_ndcg@10']:.2f} | "
                         f"{format_gain(point['ndcg@10'] - point['exact_ndcg@10'])} | "
                         f"{point['recall@10_vs_exact']:.3f} | {point['queries_per_s']:,.0f} | "
                         f"{point['exact_queries_per_s']:,.0f} |")
        lines.append("")
    return "\n".join(lines)


def plot_speed_recall(record: dict[str, Any], path: Path) -> bool:
    """Queries/s against recall@10, one line per index as its knob grows; exact search as a reference line."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for factory in dict.fromkeys(p["index"] for p in record["large"] if p["index"] != "Flat"):
        points = [p for p in record["large"] if p["index"] == factory]
        axes.plot([p["recall@10_vs_exact"] for p in points], [p["queries_per_s"] for p in points], marker="o",
                  label=factory)
    exact = record["large"][0]["exact_queries_per_s"]
    axes.axhline(exact, color="grey", linestyle="--", label="Flat (exact)")
    axes.axvline(TARGET_RECALL, color="grey", linestyle=":", linewidth=1)
    axes.set_yscale("log")
    axes.set_xlabel("recall@10 against exact search")
    axes.set_ylabel("queries/s")
    clusters = record["config"].get("clusters", 1)
    axes.set_title(f"{record['vectors']['rows']:,} x {record['vectors']['dim']}-d vectors "
                   f"({'one Gaussian' if clusters == 1 else f'mixture of {clusters} Gaussians'}), "
                   f"{record['environment']['hardware']['cpu_cores']} CPU cores", fontsize=9)
    axes.legend(fontsize=8)
    return _save(figure, path)


# ----------------------------------------------------------------------------- speed (benchmarks/perf.py)

PERF_KIND = "perf-benchmark"
PLAIN_ENCODE, EXAMPLE_RECIPE = "plain sentence-transformers", "example recipe"
REPRODUCTION_GOAL_MINUTES = 15


def is_full_reproduction(record: dict[str, Any]) -> bool:
    """A fine-tune of the whole Table 2 recipe: STSb 4 epochs on all pairs, every task scored before and after."""
    return (record["kind"] == "finetune" and setting(record, "objective") == "sts-cosine"
            and setting(record, "epochs") == 4 and setting(record, "max_train_samples") is None
            and len(setting(record, "sts_tasks")) == len(TABLE1_STS_TASKS)
            and set(setting(record, "retrieval_tasks")) >= set(DEFAULT_RETRIEVAL_TASKS))


def render_perf(benchmarks: list[dict[str, Any]], finetunes: list[dict[str, Any]], plots_dir: Path | None) -> str:
    """results/perf.md: encode and training speed against plain sentence-transformers, and the whole
    reproduction's wall time."""
    lines = ["# Speed: this project against plain sentence-transformers", "",
             "Regenerated by `python scripts/make_tables.py` from the records `benchmarks/perf.py` and "
             "`scripts/finetune.py` wrote. Do not edit by hand. Ratios compare runs of one benchmark, on one "
             "machine, one after the other. *useful GFLOP/s* counts the encoder's FLOPs on the real tokens "
             "(padding excluded); its share is of the fp32 matrix-multiply speed measured in the same run. "
             "bf16 encodes with bf16 weights; int8 quantizes the Linear layers' weights to int8 once and "
             "their inputs per batch (dynamic quantization). Training speed is the steady state: the mean "
             "time between optimizer steps after the first few; peak memory is the training process's "
             "peak resident set.", ""]
    for number, record in enumerate(benchmarks, start=1):
        peaks = record["matmul_gflops"]
        lines += [f"## On {_machine_label(record['environment']['hardware'])}", "",
                  f"torch {record['environment']['packages'].get('torch')} with {record['torch_threads']} "
                  f"threads, sentence-transformers {record['environment']['packages'].get('sentence-transformers')}, "
                  f"commit {_commit_label(record['environment']['git'])}, "
                  f"[record](records/{record['_path']}/{RECORD}); the benchmark took "
                  f"{_minutes(record['wall_seconds'])}. Matrix-multiply ceiling: **{peaks['fp32']:,.0f} GFLOP/s "
                  f"fp32**, {peaks['bf16']:,.0f} GFLOP/s bf16.", "",
                  f"### Encoding (batch {record['config']['encode_batch_size']}, the model's own maximum length)", "",
                  "| model | data | variant | sentences/s | vs plain | useful GFLOP/s | share of fp32 peak | "
                  "STSb Spearman | change |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for model in record["models"]:
            for data in dict.fromkeys(point["data"] for point in model["encode"]):
                points = [point for point in model["encode"] if point["data"] == data]
                plain = next(point for point in points if point["variant"] == PLAIN_ENCODE)
                speedups = _speedups(points, PLAIN_ENCODE, "sentences_per_s")
                for point in points:
                    spearman = point.get("stsb_spearman")
                    change = (format_gain(spearman - plain["stsb_spearman"])
                              if spearman is not None and point is not plain else "")
                    lines.append(f"| {model['model']} | {data} | {point['variant']} | "
                                 f"{point['sentences_per_s']:,.1f} | "
                                 f"{speedups[point['variant']]:.2f}x | "
                                 f"{point['gflops']:,.0f} | {100 * point['share_of_fp32_peak']:.0f}% | "
                                 f"{format_score(spearman) if spearman is not None else '-'} | {change} |")
        first = record["models"][0]["train"][0]
        lines += ["", f"### Training (STSb train, batch {first['batch_size']}, at most {first['max_seq_length']} "
                      f"tokens, CosineSimilarityLoss)", "",
                  "| model | variant | steps/s | samples/s | vs example recipe | peak memory |",
                  "|---|---|---:|---:|---:|---:|"]
        for model in record["models"]:
            speedups = _speedups(model["train"], EXAMPLE_RECIPE, "samples_per_s")
            for point in model["train"]:
                lines.append(f"| {model['model']} | {point['variant']} | {point['steps_per_s']:.2f} | "
                             f"{point['samples_per_s']:.1f} | {speedups[point['variant']]:.2f}x | "
                             f"{point['peak_rss_mib']:,.0f} MiB |")
        if plots_dir is not None and plot_speedups(record, plots_dir / f"perf-{number}.png"):
            lines += ["", f"![speed-ups](plots/perf-{number}.png)"]
        lines.append("")
    lines += [f"## The whole reproduction (goal: under {REPRODUCTION_GOAL_MINUTES} min)", "",
              "`scripts/finetune.py` with the Table 2 recipe: the baseline on every task, STSb train for 4 epochs, "
              "the fine-tuned model on every task. One seed's wall time; a run of several seeds scores the "
              "baseline once, and each of its seeds is shown with that baseline time included. The machine was "
              "at times shared with other work, which slows a run without changing its scores.", "",
              "| run | model | precision | batches | baseline eval | train | fine-tuned eval | total | "
              "STSb Spearman | git |", "|---|---|---|---|---:|---:|---:|---:|---:|---|"]
    for record in finetunes:
        timings = record["timings"]
        total = _minutes(timings["total_s"])
        lines.append(f"| [{record['_path']}](records/{record['_path']}/{RECORD}) | "
                     f"{model_label(record['config']['model'])} | {setting(record, 'precision')} | "
                     f"{'length-grouped' if setting(record, 'group_by_length') else 'random'} | "
                     f"{_minutes(timings['baseline_eval_s'])} | {_minutes(timings['train_s'])} | "
                     f"{_minutes(timings['finetuned_eval_s'])} | "
                     f"{f'**{total}**' if timings['total_s'] < 60 * REPRODUCTION_GOAL_MINUTES else total} | "
                     f"{format_score(record['finetuned']['scores']['stsb/spearman'])} | "
                     f"{_commit_label(record['environment']['git'])} |")
    lines.append("")
    return "\n".join(lines)


def _short(model: str) -> str:
    """A model's label short enough for an axis: 'org/name/model' -> 'org', 'x shape, random weights' -> 'x shape'."""
    return model.split("/")[0].split(",")[0]


def _speedups(points: list[dict[str, Any]], reference: str, key: str) -> dict[str, float]:
    """Each variant's `key` (a speed) over the reference variant's, by variant name."""
    base = next(point for point in points if point["variant"] == reference)[key]
    return {point["variant"]: point[key] / base for point in points}


def plot_speedups(record: dict[str, Any], path: Path) -> bool:
    """Encoding speed over plain sentence-transformers, and training speed over the example recipe."""
    import matplotlib.pyplot as plt

    figure, (encoding, training) = plt.subplots(1, 2, figsize=(13, 4.8), width_ratios=(2, 1))
    encode_groups = {f"{_short(model['model'])}\n{data.split(' (')[0]}":
                     _speedups([p for p in model["encode"] if p["data"] == data], PLAIN_ENCODE, "sentences_per_s")
                     for model in record["models"] for data in dict.fromkeys(p["data"] for p in model["encode"])}
    _speedup_bars(encoding, encode_groups, "sentences/s over plain sentence-transformers", "encoding")
    train_groups = {_short(model["model"]): _speedups(model["train"], EXAMPLE_RECIPE, "samples_per_s")
                    for model in record["models"]}
    _speedup_bars(training, train_groups, "samples/s over the sentence-transformers example",
                  f"training, {record['environment']['hardware']['cpu_cores']} CPU cores")
    return _save(figure, path)


def _speedup_bars(axes: Any, groups: dict[str, dict[str, float]], ylabel: str, title: str) -> None:
    """One bar per variant in each group (a variant a group lacks is left out), 1.0 dashed."""
    variants = list(dict.fromkeys(variant for speedups in groups.values() for variant in speedups))
    width = 0.8 / len(variants)
    for offset, variant in enumerate(variants):
        axes.bar(np.arange(len(groups)) + offset * width,
                 [speedups.get(variant, float("nan")) for speedups in groups.values()], width, label=variant)
    axes.set_xticks(np.arange(len(groups)) + 0.4 - width / 2, list(groups), fontsize=7)
    axes.set_ylabel(ylabel)
    axes.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    axes.set_ylim(0, axes.get_ylim()[1] * 1.4)  # room for the legend above the bars
    axes.legend(fontsize=7, loc="upper left")
    axes.set_title(title, fontsize=9)


def render_pages(records: list[dict[str, Any]], plots_dir: Path | None) -> dict[str, str]:
    """results/'s pages by file name: README.md always; ann.md and perf.md when their benchmarks have records."""
    pages = {"README.md": render(records, plots_dir)}
    benchmarks = [record for record in records if record["kind"] == ANN_KIND]
    if benchmarks:
        pages["ann.md"] = render_ann(benchmarks, plots_dir)
    speed = [record for record in records if record["kind"] == PERF_KIND]
    if speed:
        pages["perf.md"] = render_perf(speed, [record for record in records if is_full_reproduction(record)],
                                       plots_dir)
    return pages


def make_tables(results_dir: Path, add: Sequence[Path] = (), readme: Path | None = None) -> Path:
    """Copy runs in (`add`), then regenerate results_dir/README.md, ann.md, perf.md, results_dir/plots/ and,
    when given, the timings block of the top-level `readme`, all from the records."""
    if readme is not None and not all(marker in readme.read_text(encoding="utf-8") for marker in README_BLOCK):
        raise UsageError(f"{readme}: no '{README_BLOCK[0].strip()}' ... '{README_BLOCK[1].strip()}' block to "
                         "fill; restore the markers")
    records_dir = results_dir / "records"
    for run_dir in add:
        add_run(run_dir, records_dir)
    records = load_records(records_dir) if records_dir.is_dir() else []
    # Plots are drawn into a staging folder (the slow part: an interrupt there leaves results/ as it was), moved
    # in beside the old ones, and only then are the pages written and the plots no page links any more deleted.
    plots = results_dir / "plots"
    staging = fresh_staging(plots, "--results-dir")
    with removed_on_failure(staging):
        pages = render_pages(records, staging)
        kill_point("plots-drawn")
        drawn = sorted(path.name for path in staging.glob("*.png"))
        plots.mkdir(parents=True, exist_ok=True)
        for name in drawn:
            os.replace(staging / name, plots / name)
        staging.rmdir()
    for name, page in pages.items():
        write_text_atomic(results_dir / name, page)
    if readme is not None:
        update_readme_block(readme, readme_timings(records))
    for stale in plots.glob("*.png"):  # none may outlive its run
        if stale.name not in drawn:
            stale.unlink()
    return results_dir / "README.md"
