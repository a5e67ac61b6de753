"""One reader of run records (records.load_record): the resume path (read_record) and the results pages
(committed_records.load_records) get the same typed record, and an unreadable one is a one-line error for both."""

from __future__ import annotations

import json

import pytest
from conftest import with_environment

from sbert_repro.errors import UsageError
from sbert_repro.runs import committed as committed_records
from sbert_repro.runs import records
from sbert_repro.runs.schema import as_json

# A fine-tune record from before --precision and --group-by-length, with no status: as the oldest ones are.
OLD_RECORD = with_environment({"kind": "finetune", "config": {"model": "org/m", "pooling": "mean", "seed": 1},
                               "baseline": {"scores": {}}, "finetuned": {"scores": {}}})


def test_both_readers_give_the_same_upgraded_record(tmp_path):
    folder = tmp_path / "records" / "old-run"
    folder.mkdir(parents=True)
    (folder / records.RECORD).write_text(json.dumps(OLD_RECORD), encoding="utf-8")
    resumed = records.read_record(folder)
    [listed] = committed_records.load_records(tmp_path / "records")
    assert (listed.path, resumed.path) == ("old-run", "")
    assert resumed.model_dump() == listed.model_dump() and as_json(listed) == OLD_RECORD
    assert (listed.status, listed.config.precision, listed.config.group_by_length) == ("complete", "fp32", False)
    assert {"precision", "group_by_length"} <= set(listed.config.assumed)  # filled in, not recorded
    assert records.read_record(tmp_path) is None  # no record.json there


def test_an_unreadable_record_is_one_line_saying_what_to_do_for_each_reader(tmp_path):
    folder = tmp_path / "records" / "bad"
    folder.mkdir(parents=True)
    (folder / records.RECORD).write_text("{not json", encoding="utf-8")
    with pytest.raises(UsageError, match=r"bad/record.json: not a readable run record \(.*\); move it away") as run:
        records.read_record(folder)
    with pytest.raises(UsageError, match=r"bad/record.json: not a readable run record \(.*\); restore it") as page:
        committed_records.load_records(tmp_path / "records")
    assert "\n" not in str(run.value) + str(page.value)
