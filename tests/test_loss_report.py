"""results/README.md's "Loss comparison" and "Matryoshka: score against dimension" sections, on records built here
in the shape of a committed fine-tune record, and on the committed records."""

from __future__ import annotations

import json
import subprocess
from functools import cache
from pathlib import Path

from conftest import REPO_ROOT
from test_tables import write_run

from sbert_repro.report import dimension_table as dimensions
from sbert_repro.report import record_groups as runs
from sbert_repro.report import results_page as results
from sbert_repro.runs import committed as committed_records

RESULTS = REPO_ROOT / "results"
COMMITTED = RESULTS / "records" / "table2-minilm-4ep-part1" / "seed-42" / "record.json"
MODEL = "org/some-model"
RAW = {"stsb/spearman": 80.0, "sts-avg/spearman": 75.0, "scifact/ndcg@10": 50.0, "scifact/recall@10": 70.0,
       "stsb-retrieval/ndcg@10": 88.0, "stsb-retrieval/recall@10": 95.0}
# The raw model cut to fewer dimensions (a Matryoshka run's baseline is scored at its dimensions).
RAW_CUT = {"stsb@256/spearman": 79.0, "stsb@128/spearman": 76.0, "stsb@64/spearman": 70.0,
           "scifact@256/ndcg@10": 49.0, "scifact@128/ndcg@10": 45.0, "scifact@64/ndcg@10": 40.0,
           "scifact@256/recall@10": 69.0, "scifact@128/recall@10": 65.0, "scifact@64/recall@10": 60.0}
BYTES = {"scifact/bytes_per_vector": 1536.0, "scifact@256/bytes_per_vector": 1024.0,
         "scifact@128/bytes_per_vector": 512.0, "scifact@64/bytes_per_vector": 256.0}
DIMS = [384, 256, 128, 64]


@cache
def committed_record() -> str:
    return COMMITTED.read_text(encoding="utf-8")


def finetune_record(objective: str, seed: int, seeds: list[int], scores: dict[str, float], train_s: float = 600.0,
                    dims: list[int] | None = None, model: str = MODEL, epochs: int = 4) -> dict:
    """A committed record's shape (config, environment, training history, timings) with these settings and
    fine-tuned scores; a Matryoshka run's baseline and speeds also at the cut dimensions."""
    record = json.loads(committed_record())
    record["config"].update(model=model, objective=objective, seed=seed, seeds=seeds, epochs=epochs,
                            matryoshka_dims=dims or [], precision="fp32", group_by_length=False)
    record["baseline"] = {"scores": {**RAW, **(RAW_CUT if dims else {})}, "speeds": BYTES if dims else {}}
    record["finetuned"] = {"scores": scores, "speeds": BYTES if dims else {}}
    record["timings"]["train_s"] = train_s
    return record


def sts_scores(stsb: float, avg: float = 81.0, scifact: float = 62.0, retrieval: float | None = 90.0) -> dict:
    scores = {"stsb/spearman": stsb, "sts-avg/spearman": avg, "scifact/ndcg@10": scifact, "scifact/recall@10": 75.0}
    return scores if retrieval is None else {**scores, "stsb-retrieval/ndcg@10": retrieval,
                                             "stsb-retrieval/recall@10": 96.0}


def write_losses(records_dir: Path, angle: bool = True, model: str = MODEL, suffix: str = "") -> None:
    """sts-cosine over 3 seeds (STSb 85.2 +- 0.2), sts-cosent over 3 (85.6 +- 0.1, one seed without
    stsb-retrieval) and, with `angle`, sts-angle over 2 (86.1 +- 0.28)."""
    seeds = [1, 2, 3]
    write_run(records_dir, f"cosine{suffix}", [
        finetune_record("sts-cosine", seed, seeds, sts_scores(stsb, avg, scifact, retrieval), train_s, model=model)
        for seed, stsb, avg, scifact, retrieval, train_s in ((1, 85.0, 80.0, 60.0, 90.0, 600.0),
                                                             (2, 85.2, 81.0, 62.0, 90.5, 660.0),
                                                             (3, 85.4, 82.0, 64.0, 91.0, 720.0))])
    write_run(records_dir, f"cosent{suffix}", [
        finetune_record("sts-cosent", seed, seeds, sts_scores(stsb, retrieval=None if seed == 3 else 90.0), model=model)
        for seed, stsb in ((1, 85.5), (2, 85.6), (3, 85.7))])
    if angle:
        write_run(records_dir, f"angle{suffix}", [finetune_record("sts-angle", seed, [1, 2], sts_scores(stsb),
                                                                  model=model)
                                                  for seed, stsb in ((1, 85.9), (2, 86.3))])


def write_matryoshka(records_dir: Path, scifact_at_128: tuple[float, float] = (59.0, 60.0), scifact: bool = True,
                     objective: str = "sts-cosent", model: str = MODEL, name: str = "cosent-matryoshka") -> None:
    """A Matryoshka run over seeds 1, 2: STSb 85.5 at full size, 85.0 / 84.5 / 81.5 cut to 256 / 128 / 64; SciFact
    61.0, then 60.5 / the mean of `scifact_at_128` / 55.5."""
    records = []
    for seed, offset in ((1, 0.0), (2, 1.0)):
        scores = {"stsb/spearman": 85.0 + offset, "stsb@256/spearman": 84.5 + offset,
                  "stsb@128/spearman": 84.0 + offset, "stsb@64/spearman": 81.0 + offset}
        if scifact:
            scores.update({"scifact/ndcg@10": 60.0 + 2 * offset, "scifact@256/ndcg@10": 60.0 + offset,
                           "scifact@128/ndcg@10": scifact_at_128[seed - 1], "scifact@64/ndcg@10": 55.0 + offset,
                           **{f"scifact{at}/recall@10": 75.0 for at in ("", "@256", "@128", "@64")}})
        records.append(finetune_record(objective, seed, [1, 2], scores, dims=DIMS, model=model))
    write_run(records_dir, name, records)


def section(page: str, heading: str) -> str:
    return page.split(f"## {heading}")[1].split("\n## ")[0]


def render(records_dir: Path, plots_dir: Path | None = None) -> str:
    return results.render_results(committed_records.load_records(records_dir), plots_dir=plots_dir)


ROW = "| `org/some-model` | local copies (data/), 4 epoch(s) | "


def test_one_row_per_loss_with_means_differences_and_the_paper_row(tmp_path):
    write_losses(tmp_path / "records")
    write_matryoshka(tmp_path / "records")  # no row here: Matryoshka has its own section
    losses = section(render(tmp_path / "records"), "Loss comparison")
    rows = [line for line in losses.splitlines() if line.startswith("| `")]
    assert rows == [
        # mean 85.2, sample std 0.2; 7-task 81 +- 1; SciFact 62 +- 2; STSb-as-retrieval 90.5 +- 0.5; (600+660+720)/3 s
        ROW + "`sts-cosine`: CosineSimilarityLoss (the paper's) | 3 | 85.20 +- 0.20 | reference | 81.00 +- 1.00 | "
        "62.00 +- 2.00 | 90.50 +- 0.50 | 11.0 min | 2 CPU cores (AMD EPYC) | [records](records/cosine/) |",
        # 85.6 - 85.2; one seed did not score STSb-as-retrieval: "-", never a mean of the others
        ROW + "`sts-cosent`: CoSENT loss | 3 | 85.60 +- 0.10 | +0.40 | 81.00 +- 0.00 | 62.00 +- 0.00 | - | "
        "10.0 min | 2 CPU cores (AMD EPYC) | [records](records/cosent/) |",
        # std of 85.9 and 86.3: sqrt(0.08) = 0.283; 86.1 - 85.2
        ROW + "`sts-angle`: AnglE loss | 2 | 86.10 +- 0.28 | +0.90 | 81.00 +- 0.00 | 62.00 +- 0.00 | 90.00 +- 0.00 | "
        "10.0 min | 2 CPU cores (AMD EPYC) | [records](records/angle/) |",
        "| `bert-base-uncased` | paper (SBERT-STSb-base) | `sts-cosine`: CosineSimilarityLoss (the paper's) | 10 | "
        "84.67 +- 0.19 | - | - | - | - | - | - | paper, Table 2 |"]
    assert ("**`org/some-model`, local copies (data/), 4 epoch(s): the best loss but the paper's, `sts-angle`, scores "
            "+0.90 over sts-cosine (85.20 -> 86.10, means over seeds): at least the 0.5 set as the goal.**") in losses
    assert "same model, pooling, data and number of training pairs, epochs, number format (precision)" in losses


def test_the_verdict_below_the_bar_and_rows_grouped_by_model(tmp_path):
    write_losses(tmp_path / "records", angle=False, model="org/b-model", suffix="-b")
    write_losses(tmp_path / "records", model="org/a-model", suffix="-a")
    losses = section(render(tmp_path / "records"), "Loss comparison")
    models = [line.split(" | ")[0] for line in losses.splitlines() if line.startswith("| `")]
    assert models == ["| `org/a-model`"] * 3 + ["| `org/b-model`"] * 2 + ["| `bert-base-uncased`"]
    assert ("**`org/b-model`, local copies (data/), 4 epoch(s): the best loss but the paper's, `sts-cosent`, scores "
            "+0.40 over sts-cosine (85.20 -> 85.60, means over seeds): below the 0.5 set as the goal.**") in losses
    assert "`sts-angle`, scores +0.90 over sts-cosine (85.20 -> 86.10, means over seeds): at least" in losses


def test_a_loss_trained_otherwise_is_not_compared(tmp_path):
    write_losses(tmp_path / "records", angle=False)
    write_run(tmp_path / "records", "cosent-1ep", [finetune_record("sts-cosent", 1, [1], sts_scores(88.0), epochs=1)])
    losses = section(render(tmp_path / "records"), "Loss comparison")
    assert ("| `org/some-model` | local copies (data/), 1 epoch(s) | `sts-cosent`: CoSENT loss | 1 | 88.00 | - |"
            in losses)
    assert "(85.20 -> 85.60, means over seeds): below" in losses  # the 4-epoch cosent, not the 1-epoch one
    assert "88.00, means" not in losses


def test_without_a_loss_run_the_section_is_absent(tmp_path):
    write_run(tmp_path / "records", "nli", [finetune_record("nli-mnrl", 1, [1], sts_scores(80.0))])
    assert "## Loss comparison" not in render(tmp_path / "records")


def matryoshka_part(page: str) -> str:
    return section(page, "Matryoshka: score against dimension")


def test_matryoshka_table_shares_of_full_size_and_the_goal_missed(tmp_path):
    write_matryoshka(tmp_path / "records")
    part = matryoshka_part(render(tmp_path / "records"))
    assert ("| dimensions | STSb Spearman: Matryoshka-trained | STSb Spearman: raw model, truncated | "
            "SciFact nDCG@10: Matryoshka-trained | SciFact nDCG@10: raw model, truncated | bytes per vector |") in part
    # Matryoshka: means 85.5 (std of 85, 86: 0.71), then 85.0, 84.5, 81.5 as shares of 85.5: 99.4%, 98.8%, 95.3%;
    # SciFact 61 (std 1.41), then 60.5, 59.5, 55.5 of 61: 99.2%, 97.5%, 91.0%. Raw: 79, 76, 70 of 80; 49, 45, 40 of 50.
    assert "| full | 85.50 +- 0.71 | 80.00 | 61.00 +- 1.41 | 50.00 | 1536 |" in part
    assert "| 256 | 85.00 +- 0.71 (99.4%) | 79.00 (98.8%) | 60.50 +- 0.71 (99.2%) | 49.00 (98.0%) | 1024 |" in part
    assert "| 128 | 84.50 +- 0.71 (98.8%) | 76.00 (95.0%) | 59.50 +- 0.71 (97.5%) | 45.00 (90.0%) | 512 |" in part
    assert "| 64 | 81.50 +- 0.71 (95.3%) | 70.00 (87.5%) | 55.50 +- 0.71 (91.0%) | 40.00 (80.0%) | 256 |" in part
    assert ("At 128 dimensions the Matryoshka-trained model keeps 98.8% of its full-size STSb Spearman and 97.5% of "
            "its SciFact nDCG@10; plain truncation of the raw model keeps 95.0% / 90.0%. "
            "**Below the issue's 98% bar for SciFact nDCG@10.**") in part
    assert "without Matryoshka" not in part.split("\n\n", 2)[2]  # no such run: no such column
    assert "### `org/some-model`, mean pooling, STSb 4 epoch(s), CoSENT loss, Matryoshka 384,256,128,64, seeds 1, 2" \
           in part


def test_matryoshka_goal_met_and_the_run_without_matryoshka_beside(tmp_path):
    write_matryoshka(tmp_path / "records", scifact_at_128=(60.5, 61.0))  # 60.75 of 61: 99.6%
    write_losses(tmp_path / "records", angle=False)
    for path in (tmp_path / "records" / "cosent").rglob("record.json"):  # the plain cosent run, scored cut too
        record = json.loads(path.read_text())
        record["finetuned"]["scores"].update({"stsb@256/spearman": 84.0, "stsb@128/spearman": 80.0})
        path.write_text(json.dumps(record))
    part = matryoshka_part(render(tmp_path / "records"))
    assert "| STSb Spearman: trained without Matryoshka, truncated | SciFact nDCG@10: Matryoshka-trained |" in part
    # the plain cosent run: 85.6 +- 0.1 at full size; 84 of 85.6 = 98.1%, 80 of 85.6 = 93.5%; not scored at 64, and
    # SciFact not cut: no column for it there
    assert "SciFact nDCG@10: trained without" not in part
    assert "| full | 85.50 +- 0.71 | 80.00 | 85.60 +- 0.10 | 61.00 +- 1.41 | 50.00 | 1536 |" in part
    assert "| 256 | 85.00 +- 0.71 (99.4%) | 79.00 (98.8%) | 84.00 +- 0.00 (98.1%) |" in part
    assert "| 128 | 84.50 +- 0.71 (98.8%) | 76.00 (95.0%) | 80.00 +- 0.00 (93.5%) | 60.75 +- 0.35 (99.6%) |" in part
    assert "| 64 | 81.50 +- 0.71 (95.3%) | 70.00 (87.5%) | - |" in part
    assert "keeps 98.8% of its full-size STSb Spearman and 99.6% of its SciFact nDCG@10" in part
    assert "**At or above the issue's 98% bar.**" in part


def test_matryoshka_without_scifact_or_128_dimensions(tmp_path):
    write_matryoshka(tmp_path / "records", scifact=False)
    part = matryoshka_part(render(tmp_path / "records"))
    assert "SciFact" not in part.split("| dimensions |")[1].split("\n")[0]
    assert ("At 128 dimensions the Matryoshka-trained model keeps 98.8% of its full-size STSb Spearman (SciFact was "
            "not scored); plain truncation of the raw model keeps 95.0%. **At or above the issue's 98% bar.**") in part
    for path in (tmp_path / "records").rglob("record.json"):  # the same run, without its 128-dimension scores
        record = json.loads(path.read_text())
        for stage in ("baseline", "finetuned"):
            record[stage]["scores"] = {k: v for k, v in record[stage]["scores"].items() if "@128" not in k}
        path.write_text(json.dumps(record))
    part = matryoshka_part(render(tmp_path / "records"))
    assert "| 64 |" in part and "| 128 |" not in part and "At 128 dimensions" not in part


def test_matryoshka_plots_are_linked_and_byte_identical_when_drawn_twice(tmp_path):
    write_matryoshka(tmp_path / "records")
    write_matryoshka(tmp_path / "records", scifact=False, objective="sts-cosine", name="cosine-matryoshka")
    groups = runs.finetune_groups(committed_records.load_records(tmp_path / "records"))
    once = dimensions.matryoshka_section(groups, tmp_path / "one")
    twice = dimensions.matryoshka_section(groups, tmp_path / "two")
    assert once == twice
    names = sorted(path.name for path in (tmp_path / "one").iterdir())
    assert names == ["matryoshka-cosent-matryoshka.png", "matryoshka-cosine-matryoshka.png"]
    for name in names:
        assert f"![score against dimension](plots/{name})" in once
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert not any("![" in line for line in dimensions.matryoshka_section(groups, None))


def test_committed_records_regenerate_unchanged_and_measure_cosent_against_the_5_seed_cosine_run(
        regenerated_results, tmp_path, monkeypatch):
    """make_tables on a copy of results/ and README.md changes nothing; and the committed page is what it was before
    the loss comparison, plus that section: sts-cosine rows, the CoSENT and AnglE runs (each 5 seeds, in parts)
    measured against the 5-seed cosine run (issue 18's reference), and the paper's row."""
    for committed, regenerated in ((RESULTS, regenerated_results / "results"),
                                   (REPO_ROOT / "README.md", regenerated_results / "README.md")):
        diff = subprocess.run(["diff", "-r", str(committed), str(regenerated)], capture_output=True, text=True)
        assert diff.returncode == 0, diff.stdout[:2000]
    page = (RESULTS / "README.md").read_text(encoding="utf-8")
    losses = section(page, "Loss comparison")
    rows = [line for line in losses.splitlines() if line.startswith("| `")]
    assert rows[-1].startswith("| `bert-base-uncased` | paper (SBERT-STSb-base) |")
    assert "| 5 | 85.67 +- 0.12 | reference |" in losses
    means = {}
    for objective, name in (("sts-cosent", "CoSENT"), ("sts-angle", "AnglE")):
        [row] = [row for row in rows if f"`{objective}`: {name} loss" in row]
        parts = sorted((RESULTS / "records").glob(f"loss-{name.lower()}-minilm-4ep-part*"))
        assert all(f"[records](records/{part.name}/)" in row for part in parts)
        stsb = [json.loads(path.read_text())["finetuned"]["scores"]["stsb/spearman"]
                for part in parts for path in sorted(part.rglob("record.json"))]
        assert len(stsb) == 5 and f"| 5 | {sum(stsb) / 5:.2f} +- " in row
        means[objective] = sum(stsb) / 5
        rows.remove(row)
    best = max(means, key=means.get)
    assert f"`{best}`, scores {means[best] - 85.67:+.2f} over sts-cosine (85.67 -> {means[best]:.2f}" in losses
    assert all("`sts-cosine`" in row for row in rows[:-1])
    monkeypatch.setattr(results, "loss_table", lambda groups: [])
    start = page.index("## Loss comparison")
    before = page[:start] + page[page.index("\n## ", start) + 1:]
    records = committed_records.load_records(RESULTS / "records")
    assert results.render_results(records, plots_dir=tmp_path / "plots") == before


def test_seeds_trained_on_several_machines_get_a_train_time_per_machine(tmp_path):
    records = [finetune_record("sts-cosent", seed, [1, 2, 3], sts_scores(85.6), train_s)
               for seed, train_s in ((1, 600.0), (2, 720.0), (3, 120.0))]
    records[2]["environment"]["hardware"]["gpu"] = "NVIDIA H200"
    write_run(tmp_path / "records", "cosent", records)
    rows = section(render(tmp_path / "records"), "Loss comparison").splitlines()
    [mixed] = [row for row in rows if "[records](records/cosent/)" in row]
    # (600 + 720) / 2 s on the CPU, 120 s on the GPU: never their mean over both
    assert "| 11.0 min (2 CPU cores (AMD EPYC), 2 seeds); 2.0 min (NVIDIA H200, 1 seed) | " in mixed
    assert "| 2 CPU cores (AMD EPYC), NVIDIA H200 |" in mixed


def test_a_loss_is_measured_against_the_cosine_run_with_most_seeds_whatever_its_batch_order(tmp_path):
    from sbert_repro.report import loss_table as losses

    write_losses(tmp_path, angle=False)  # sts-cosine over 3 seeds, random batches (the committed record's)
    grouped = []
    for objective, seed, stsb in (("sts-cosine", 7, 85.9), ("sts-cosent", 1, 85.5), ("sts-cosent", 2, 85.7)):
        record = finetune_record(objective, seed, [seed], sts_scores(stsb))
        record["config"]["group_by_length"] = True
        grouped.append((f"{objective}-grouped-{seed}", record))
    for name, record in grouped:
        write_run(tmp_path, name, [record])
    eligible = losses.loss_groups(runs.finetune_groups(committed_records.load_records(tmp_path)))
    cosent = next(group for group in eligible if losses.objective(group) == "sts-cosent"
                  and group[0].config.group_by_length)
    reference = losses.reference(cosent, eligible)
    assert len(reference) == 3 and not reference[0].config.group_by_length


def cross_encoder_run(records_dir: Path, name: str, stsb: tuple[float, float], epochs: int = 4) -> None:
    write_run(records_dir, name, [finetune_record("cross-encoder", seed, [1, 2], {"stsb/spearman": value},
                                                  epochs=epochs) for seed, value in zip((1, 2), stsb, strict=True)])


def test_the_cross_encoder_gap_to_the_bi_encoder_is_stated_beside_the_papers(tmp_path):
    write_losses(tmp_path / "records", angle=False)  # sts-cosine: 85.2 +- 0.2 over 3 seeds; sts-cosent 85.6
    cross_encoder_run(tmp_path / "records", "ce", (84.9, 85.1))
    table2 = section(render(tmp_path / "records"), "Table 2")
    # Against sts-cosine (not sts-cosent, trained the same way too): 85.0 - 85.2
    assert ("**Cross-encoder against bi-encoder (`org/some-model`, local copies (data/), 4 epoch(s)):** the "
            "cross-encoder scores 85.00 +- 0.14 (2 seeds); the sts-cosine bi-encoder trained the same way (its batch "
            "order may differ, as in the loss comparison) scores 85.20 +- 0.20 (3 seeds): the bi-encoder leads by 0.20 "
            "(cross-encoder minus bi-encoder -0.20). The paper (bert-base-uncased, 10 seeds): cross-encoder "
            "(BERT-STSb-base) 84.30 +- 0.76, bi-encoder (SBERT-STSb-base) 84.67 +- 0.19: the bi-encoder leads by 0.37 "
            "(cross-encoder minus bi-encoder -0.37), less than the cross-encoder's seed-to-seed spread (+- 0.76). "
            "As in the paper, the bi-encoder leads.") in table2


def test_a_cross_encoder_ahead_level_or_without_a_bi_encoder_trained_the_same_way(tmp_path):
    # Against sts-cosine's 85.2: 86.0 leads by 0.80; 85.199 is level at two decimals.
    for name, stsb, says, agreement in (
            ("ahead", (85.9, 86.1), "the cross-encoder leads by 0.80 (cross-encoder minus bi-encoder +0.80)",
             "Unlike the paper, the cross-encoder leads."),
            ("level", (85.198, 85.2), "neither leads (cross-encoder minus bi-encoder +0.00)",
             "Unlike the paper, neither leads.")):
        write_losses(tmp_path / name, angle=False)
        cross_encoder_run(tmp_path / name, "ce", stsb)
        table2 = section(render(tmp_path / name), "Table 2")
        assert f"seeds): {says}. The paper" in table2 and table2.rstrip().endswith(agreement)
    write_losses(tmp_path / "records", angle=False)
    cross_encoder_run(tmp_path / "records", "ce-1ep", (80.0, 80.2), epochs=1)  # no 1-epoch sts-cosine run
    table2 = section(render(tmp_path / "records"), "Table 2")
    assert ("**Cross-encoder (`org/some-model`, local copies (data/), 1 epoch(s)):** no sts-cosine bi-encoder trained "
            "the same way is recorded, so there is no gap to set beside the paper's.") in table2
