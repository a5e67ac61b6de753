"""results/README.md's "Loss comparison" section: the STSb fine-tunes of each STS loss (sts-cosine, the paper's
CosineSimilarityLoss; sts-cosent, CoSENTLoss; sts-angle, AnglELoss) side by side, each against the sts-cosine run
trained the same way, beside the paper's SBERT-STSb-base; and whether the best other loss beats the paper's by
GOAL_GAIN."""

from __future__ import annotations

from itertools import groupby

from sbert_repro.config.objectives import STS_OBJECTIVES, get_objective
from sbert_repro.config.training import TrainConfig
from sbert_repro.report import paper
from sbert_repro.report.labels import data_label, format_gain, format_score, machine_label, mean_and_std, minutes
from sbert_repro.report.markdown import SCORE_LABELS, SEARCH, STS_AVG, STSB, STSB_SEARCH, code, markdown_table, text
from sbert_repro.report.prose import fill
from sbert_repro.report.record_groups import seed_stat, seed_values, setting, sources, speed_options
from sbert_repro.runs.paths import model_label
from sbert_repro.runs.schema import FinetuneRecord

Group = list[FinetuneRecord]

REFERENCE = TrainConfig.objective  # the paper's loss: every other is measured against it
# The bar: another loss beats the paper's when its STSb test Spearman x100, mean over seeds, is at least this
# much above sts-cosine's, trained the same way.
GOAL_GAIN = 0.5
# What two runs must share for their losses to be compared: all that changes what is trained, how long and how, but
# the loss. Batch order (random or length-grouped batches) may differ: it only adds to the seed-to-seed spread, and
# each row names its own. The section's prose says the same in words.
COMPARED_ON = ("model", "pooling", "data_dir", "max_train_samples", "epochs", "precision", "batch_size", "lr",
               "warmup_ratio", "weight_decay", "max_seq_length", "eval_max_seq_length")
# Of those, the ones a row names (by their option) only where a run left the paper's recipe, TrainConfig's defaults.
NAMED_WHEN_CHANGED = ("batch_size", "lr", "warmup_ratio", "weight_decay", "max_seq_length", "eval_max_seq_length",
                      "max_train_samples")
# The columns after STSb test's, where every seed scored them.
OTHER_SCORES = (STS_AVG, SEARCH, STSB_SEARCH)


def comparison_key(group: Group) -> tuple[str, ...]:
    """The model's label first (so rows come grouped by model), then every other setting in COMPARED_ON."""
    return (model_label(group[0].config.model), *(str(setting(group[0], name)) for name in COMPARED_ON[1:]))


def objective(group: Group) -> str:
    return group[0].config.objective


def loss_name(objective: str) -> str:
    return f"{code(objective)}: {get_objective(objective).label}"


def loss_groups(groups: list[Group]) -> list[Group]:
    """The groups of the STS losses (a bi-encoder on STSb pairs) with mean pooling (cls and max are the pooling
    ablation's), without Matryoshka (dimension_table.py's) and with STSb test scored by every seed; by comparison
    set, then loss."""
    eligible = [group for group in groups if objective(group) in STS_OBJECTIVES and group[0].config.pooling == "mean"
                and not group[0].config.matryoshka_dims and seed_values(group, "finetuned", STSB) is not None]
    return sorted(eligible, key=lambda group: (comparison_key(group), STS_OBJECTIVES.index(objective(group))))


def stsb_mean(group: Group) -> float:
    return mean_and_std(seed_values(group, "finetuned", STSB) or [])[0]


def reference(group: Group, eligible: list[Group]) -> Group | None:
    """The sts-cosine group a group is compared with: itself for an sts-cosine group; otherwise one trained the same
    way (COMPARED_ON), preferring more seeds (the firmer mean to measure against), then the same batch order; None
    where there is none."""
    if objective(group) == REFERENCE:
        return group
    candidates = [other for other in eligible
                  if objective(other) == REFERENCE and comparison_key(other) == comparison_key(group)]
    same_order = group[0].config.group_by_length
    return max(candidates, key=lambda other: (len(other), other[0].config.group_by_length == same_order),
               default=None)


def training(group: Group) -> str:
    """'local copies (data/), 4 epoch(s), bf16, length-grouped batches': how the group was trained, but the loss."""
    record, defaults = group[0], TrainConfig().to_dict()
    changed = "".join(f", --{name.replace('_', '-')} {setting(record, name)}" for name in NAMED_WHEN_CHANGED
                      if setting(record, name) != defaults[name])
    data = text(data_label(record.config.data_dir))
    return f"{data}, {record.config.epochs} epoch(s){speed_options(record)}{changed}"


def loss_row(group: Group, eligible: list[Group]) -> tuple[str, ...]:
    compared = reference(group, eligible)
    versus = ("-" if compared is None else "reference" if compared is group
              else format_gain(stsb_mean(group) - stsb_mean(compared)))
    machines = ", ".join(dict.fromkeys(machine_label(record.environment.hardware) for record in group))
    # A resumed seed's record times only the session that finished it.
    resumed = " (resumed seeds: their last session)" if any(r.training.resumed_from for r in group) else ""
    return (code(comparison_key(group)[0]), training(group), loss_name(objective(group)), str(len(group)),
            seed_stat(group, "finetuned", STSB), versus, *(seed_stat(group, "finetuned", key) for key in OTHER_SCORES),
            f"{train_minutes(group)}{resumed}", machines, sources(group))


def train_minutes(group: Group) -> str:
    """Mean train time per seed; per machine where the seeds ran on several (a mean over a CPU and a GPU says
    nothing about either)."""
    by_machine: dict[str, list[float]] = {}
    for record in group:
        by_machine.setdefault(machine_label(record.environment.hardware), []).append(record.timings.train_s)
    if len(by_machine) == 1:
        return minutes(mean_and_std(next(iter(by_machine.values())))[0])
    return "; ".join(f"{minutes(mean_and_std(times)[0])} ({machine}, {len(times)} seed{'s' * (len(times) > 1)})"
                     for machine, times in by_machine.items())


def verdicts(eligible: list[Group]) -> list[str]:
    """Per comparison set holding another loss than the paper's and an sts-cosine run: whether its best other loss
    beats sts-cosine by GOAL_GAIN on the mean over seeds (unrounded)."""
    lines = []
    for _, block in groupby(eligible, key=comparison_key):
        others = [group for group in block if objective(group) != REFERENCE and reference(group, eligible)]
        if others:
            best = max(others, key=stsb_mean)  # the first of equals: loss order
            compared = reference(best, eligible) or []
            gain = stsb_mean(best) - stsb_mean(compared)
            lines += [fill("results", "losses-goal-met" if gain >= GOAL_GAIN else "losses-goal-missed",
                           setup=f"{code(comparison_key(best)[0])}, {training(best)}", objective=code(objective(best)),
                           gain=format_gain(gain), reference=f"{stsb_mean(compared):.2f}",
                           best=f"{stsb_mean(best):.2f}", goal=f"{GOAL_GAIN:g}"), ""]
    return lines or [fill("results", "losses-none"), ""]


def loss_table(groups: list[Group]) -> list[str]:
    """The section: the table (our rows, then the paper's SBERT-STSb-base, Table 2) and a verdict per comparison set;
    [] without any row."""
    eligible = loss_groups(groups)
    if not eligible:
        return []
    name = paper.TRAINED_ROW[REFERENCE]
    theirs = ("`bert-base-uncased`", f"paper ({name})", loss_name(REFERENCE), str(paper.TABLE2_SEEDS),
              format_score(*paper.TABLE2[name]), "-", *("-" for _ in OTHER_SCORES), "-", "-", "paper, Table 2")
    header = ("model", "training", "objective: loss", "seeds", SCORE_LABELS[STSB], "vs sts-cosine",
              *(SCORE_LABELS[key] for key in OTHER_SCORES), "train per seed", "machine", "source")
    rows = [*(loss_row(group, eligible) for group in eligible), theirs]
    return [fill("results", "losses"), "", *markdown_table(header, rows, "lllrrr" + "r" * len(OTHER_SCORES) + "rll"),
            "", *verdicts(eligible)]
