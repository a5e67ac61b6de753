"""record.json's schema (runs/schema.py): every committed record reads through it and validates against the published
JSON Schema; a missing or mistyped field is named; old records are filled in and say so; the setup that groups
seeds is derived from the config's own fields."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

from sbert_repro.config.checks import setup_fields
from sbert_repro.config.training import TrainConfig
from sbert_repro.runs import schema

REPO = Path(__file__).resolve().parent.parent
COMMITTED = sorted((REPO / "results" / "records").rglob("record.json"))


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_the_published_json_schema_is_the_models():
    published = json.loads((REPO / schema.SCHEMA_FILE).read_text(encoding="utf-8"))
    assert published == schema.json_schema(), \
        f"regenerate it: python -m sbert_repro.runs.schema > {schema.SCHEMA_FILE}"


def test_every_committed_record_validates_against_the_published_schema():
    validator = jsonschema.Draft202012Validator(json.loads((REPO / schema.SCHEMA_FILE).read_text(encoding="utf-8")))
    assert len(COMMITTED) > 50
    failures = {str(path.relative_to(REPO)): error.message for path in COMMITTED
                for error in list(validator.iter_errors(_json(path)))[:1]}
    assert failures == {}


def test_the_published_schema_refuses_what_the_models_refuse():
    validator = jsonschema.Draft202012Validator(schema.json_schema())
    record = _json(REPO / "results/records/retrieval-minilm-scifact-hn3-lr5e-5/seed-42/record.json")
    record["config"]["seed"] = "42"
    assert not validator.is_valid(record)
    del record["config"]["seed"], record["environment"]
    assert not validator.is_valid(record)


def test_every_committed_record_reads_and_writes_back_unchanged():
    for path in COMMITTED:
        record = _json(path)
        assert schema.as_json(schema.typed(record)) == record, path  # nothing filled in is ever written


@pytest.mark.parametrize(("change", "field", "problem"), [
    (lambda r: r["config"].update(seed="42"), "config.seed", "valid integer"),
    (lambda r: r.pop("environment"), "environment", "missing"),
    (lambda r: r["environment"]["hardware"].pop("cpu"), "environment.hardware.cpu", "missing"),
    (lambda r: r["baseline"]["scores"].update({"stsb/spearman": "high"}), "baseline.scores.stsb/spearman",
     "valid number"),
    (lambda r: r.update(kind="finetuned"), "kind", "'finetuned' is not a kind of record"),
    (lambda r: r.update(status="done"), "status", "'complete' or 'incomplete'"),
])
def test_a_missing_or_mistyped_field_is_named(change, field, problem):
    record = _json(REPO / "results/records/retrieval-minilm-scifact-hn3-lr5e-5/seed-42/record.json")
    change(record)
    with pytest.raises(schema.RecordError) as raised:
        schema.typed(record)
    assert raised.value.field == field
    assert problem in raised.value.problem


def test_an_old_record_reads_in_todays_shape_and_says_what_was_assumed():
    record = schema.typed(_json(REPO / "results/records/table2-minilm-4ep-part1/seed-42/record.json"))
    # written before --precision, --group-by-length and --objective: the values such runs had, marked as assumed
    assert (record.config.precision, record.config.group_by_length, record.config.objective) == \
        ("fp32", False, "sts-cosine")
    assert {"precision", "group_by_length", "objective"} <= set(record.config.assumed)
    assert "lr" not in record.config.assumed and "status" in record.assumed
    fresh = schema.typed(_json(REPO / "results/records/retrieval-minilm-scifact-hn3-lr5e-5/seed-42/record.json"))
    assert "precision" not in fresh.config.assumed


def test_the_setup_is_every_config_field_but_those_declared_otherwise():
    fields = setup_fields(TrainConfig)
    assert {"model", "pooling", "objective", "lr", "precision", "group_by_length", "query_prompt"} <= set(fields)
    assert not {"seed", "seeds", "output_dir", "device", "argv", "eval_batch_size"} & set(fields)

    @dataclass(frozen=True)
    class WithANewOption(TrainConfig):
        label_smoothing: float = 0.0

    assert setup_fields(WithANewOption) == (*fields, "label_smoothing")  # picked up without being listed anywhere


def test_the_report_groups_by_the_derived_setup(monkeypatch):
    from sbert_repro.report import record_groups

    assert sorted(record_groups.SETUP_FIELDS) == sorted(setup_fields(TrainConfig))  # ordered for tables, no more
    base = _json(REPO / "results/records/retrieval-minilm-scifact-hn3-lr5e-5/seed-42/record.json")
    runs = []
    for seed, smoothing in ((42, 0.0), (43, 0.0), (44, 0.1)):
        record = copy.deepcopy(base)
        record["config"].update(seed=seed, label_smoothing=smoothing)
        runs.append(schema.typed(record).at(f"run/seed-{seed}"))
    assert [len(group) for group in record_groups.finetune_groups(runs)] == [3]  # TrainConfig has no such option

    @dataclass(frozen=True)
    class WithANewOption(TrainConfig):
        label_smoothing: float = 0.0

    monkeypatch.setattr(record_groups, "SETUP_FIELDS", setup_fields(WithANewOption))
    assert sorted(len(group) for group in record_groups.finetune_groups(runs)) == [1, 2]


@pytest.mark.parametrize(("change", "field"), [
    (lambda r: r["config"].update(seed="42"), "config.seed"),
    (lambda r: r["environment"].pop("git"), "environment.git"),
])
def test_make_tables_names_the_file_and_the_field_in_one_line(tmp_path, capsys, change, field):
    from sbert_repro.cli.tables import make_tables_script

    record = _json(REPO / "results/records/retrieval-minilm-scifact-hn3-lr5e-5/seed-42/record.json")
    change(record)
    path = tmp_path / "results" / "records" / "run" / "seed-42" / "record.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record), encoding="utf-8")
    assert make_tables_script(["--results-dir", str(tmp_path / "results")], REPO) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and f"field {field}:" in err
    assert not (tmp_path / "results" / "README.md").exists()  # nothing written
