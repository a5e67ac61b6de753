"""Runs that survive: resume after SIGKILL, records marked incomplete, determinism, a diverging loss,
--overwrite, safe model loading, no secrets in outputs, and property-based tests of the file parsers."""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
from pathlib import Path

import pytest
from conftest import kill_once_saved, start_slowed_run, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sbert_repro.cli.main import main
from sbert_repro.data import loaders as data
from sbert_repro.errors import UsageError
from sbert_repro.runs import committed as committed_records


def run_args(model: Path, data_dir: Path, out: Path, *extra: str) -> list[str]:
    # --precision named: the driver process resolves auto on the real CPU, the test process under conftest's patch.
    return ["--model", str(model), "--data-dir", str(data_dir), "--output-dir", str(out), "--epochs", "2",
            "--batch-size", "8", "--lr", "3e-3", "--save-steps", "5", "--sts-tasks", "stsb",
            "--retrieval-tasks", "stsb-retrieval", "--device", "cpu", "--precision", "fp32", *extra]


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, tiny_data_dir, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert main(["finetune", *run_args(tiny_model_dir, tiny_data_dir, out)]) == 0
    return json.loads((out / "record.json").read_text())


def test_same_seed_on_cpu_gives_identical_scores(uninterrupted, tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "again"
    assert main(["finetune", *run_args(tiny_model_dir, tiny_data_dir, out)]) == 0
    again = json.loads((out / "record.json").read_text())
    assert again["finetuned"]["scores"] == uninterrupted["finetuned"]["scores"]
    assert again["training"]["validation_history"] == uninterrupted["training"]["validation_history"]


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_scores(uninterrupted, tiny_model_dir, tiny_data_dir,
                                                                      tmp_path, caplog):
    out = tmp_path / "killed"
    args = run_args(tiny_model_dir, tiny_data_dir, out)
    # 12 steps per epoch: checkpoint-15 is saved in the middle of the second epoch.
    kill_once_saved(start_slowed_run("CosineSimilarityLoss", 0.15, ["finetune", *args]),
                    out / "checkpoints" / "sts-cosine" / "checkpoint-15")

    record = json.loads((out / "record.json").read_text())
    assert record["status"] == "incomplete"
    assert not (out / "model").exists()
    # make_tables leaves the killed run out, with a warning
    shutil.copytree(out, tmp_path / "records" / "killed", ignore=shutil.ignore_patterns("checkpoints"))
    with caplog.at_level(logging.WARNING):
        assert committed_records.load_records(tmp_path / "records") == []
    assert "did not finish" in caplog.text

    assert main(["finetune", *args, "--resume"]) == 0
    resumed = json.loads((out / "record.json").read_text())
    assert resumed["status"] == "complete"
    assert resumed["training"]["resumed_from"].endswith("checkpoint-15")
    for key, value in uninterrupted["finetuned"]["scores"].items():
        assert resumed["finetuned"]["scores"][key] == pytest.approx(value, abs=0.01), key


def test_resume_refuses_a_different_setup(uninterrupted, tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "record.json").write_text(json.dumps({**uninterrupted, "status": "incomplete"}))
    code = main(["finetune", *run_args(tiny_model_dir, tiny_data_dir, out, "--lr", "1e-3"), "--resume"])
    assert code == 2 and "was made with lr=0.003, not 0.001" in capsys.readouterr().err


def test_resume_needs_a_run_to_continue(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    assert main(["finetune", *run_args(tiny_model_dir, tiny_data_dir, tmp_path / "none"), "--resume"]) == 2
    assert "holds no run to continue" in capsys.readouterr().err


def test_a_diverging_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_model_dir, tiny_data_dir, tmp_path,
                                                                          capsys, monkeypatch):
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss

    original, calls = CosineSimilarityLoss.forward, []

    def diverging(self, *args, **kwargs):
        calls.append(1)
        loss = original(self, *args, **kwargs)
        return loss * float("nan") if len(calls) >= 7 else loss

    monkeypatch.setattr(CosineSimilarityLoss, "forward", diverging)
    out = tmp_path / "nan"
    code = main(["finetune", *run_args(tiny_model_dir, tiny_data_dir, out)])
    # progress bars came before it; the error itself is one line
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert code == 2 and len(errors) == 1
    assert "training loss became nan at step 7" in errors[0] and "checkpoint-5" in errors[0]
    assert (out / "checkpoints" / "sts-cosine" / "checkpoint-5").is_dir()
    assert json.loads((out / "record.json").read_text())["status"] == "incomplete"


def test_overwrite_replaces_a_run_but_never_an_unrelated_folder(uninterrupted, tiny_model_dir, tiny_data_dir,
                                                                 tmp_path, capsys):
    unrelated = tmp_path / "photos"
    unrelated.mkdir()
    (unrelated / "cat.jpg").write_bytes(b"meow")
    args = ["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--sts-tasks", "stsb",
            "--retrieval-tasks", "none", "--overwrite", "--output-dir"]
    assert main([*args, str(unrelated)]) == 2
    assert "is not a run folder" in capsys.readouterr().err and (unrelated / "cat.jpg").read_bytes() == b"meow"
    runs = tmp_path / "runs"  # a folder of runs is not a run folder
    (runs / "one").mkdir(parents=True)
    (runs / "one" / "record.json").write_text('{"old": true}')
    assert main([*args, str(runs)]) == 2
    assert "is not a run folder" in capsys.readouterr().err and (runs / "one" / "record.json").is_file()
    run = runs / "one"
    # a bad model is found before the old run is touched
    bad = ["evaluate", "--model", str(tmp_path / "no-model"), "--data-dir", str(tiny_data_dir), "--overwrite",
           "--output-dir", str(run)]
    assert main(bad) == 2 and (run / "record.json").read_text() == '{"old": true}'
    assert main([*args, str(run)]) == 0
    assert json.loads((run / "record.json").read_text())["kind"] == "evaluate"


def test_overwrite_by_another_command_never_deletes_a_fine_tuned_model(tiny_model_dir, tiny_data_dir, tmp_path,
                                                                       capsys):
    """A typo in `evaluate --output-dir ... --overwrite` would cost the hours that trained the model there."""
    run = tmp_path / "trained"
    (run / "seed-1" / "model").mkdir(parents=True)
    (run / "seed-1" / "record.json").write_text('{"kind": "finetune", "status": "complete"}')
    (run / "seed-1" / "model" / "model.safetensors").write_bytes(b"weights")
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--sts-tasks", "stsb",
                 "--retrieval-tasks", "none", "--overwrite", "--output-dir", str(run)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"sbert-repro: error: --overwrite: {run} holds a finetune run and its trained model, and `evaluate` replaces "
        "only a run of its own; not deleting it: give another --output-dir, or remove that folder yourself")
    assert (run / "seed-1" / "model" / "model.safetensors").read_bytes() == b"weights"


def test_records_are_written_with_the_usual_permissions(tmp_path):
    from sbert_repro.runs.records import write_json_atomic

    previous = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "record.json", {"a": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "record.json").stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]  # no temporary file left behind


# ----------------------------------------------------------------------------- safe loading, secrets

def test_model_code_runs_only_with_trust_remote_code(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "custom"))
    marker = tmp_path / "code-ran"
    config = json.loads((folder / "config.json").read_text())
    config.update({"model_type": "custom-bert", "auto_map": {"AutoConfig": "configuration_custom.CustomConfig",
                                                              "AutoModel": "configuration_custom.CustomModel"}})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_custom.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import BertConfig, BertModel\n"
        "class CustomConfig(BertConfig):\n    model_type = 'custom-bert'\n"
        "class CustomModel(BertModel):\n    config_class = CustomConfig\n")
    code = main(["evaluate", "--model", str(folder), "--data-dir", str(tiny_data_dir), "--sts-tasks", "stsb",
                 "--retrieval-tasks", "none", "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "--trust-remote-code" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def test_a_pickle_checkpoint_never_runs_code(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "pickled"))
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    with open(folder / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"weights": _Exploit(marker)}, handle)
    code = main(["evaluate", "--model", str(folder), "--data-dir", str(tiny_data_dir), "--sts-tasks", "stsb",
                 "--retrieval-tasks", "none", "--output-dir", str(tmp_path / "out")])
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and said == (f"sbert-repro: error: --model {folder}: its weights are a pickle that torch's safe "
                                  "loader refuses (it holds more than tensors, or is no torch checkpoint), and reading "
                                  "it otherwise could run code; give the model as safetensors (converted from a copy "
                                  "you trust), or another model")
    assert not marker.exists()


def test_a_damaged_torch_checkpoint_is_one_line_and_not_called_unsafe(tiny_model_dir, tiny_data_dir, tmp_path,
                                                                      capsys):
    import torch
    from safetensors.torch import load_file

    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "damaged"))
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes((folder / "pytorch_model.bin").read_bytes()[:-100])  # cut short
    code = main(["evaluate", "--model", str(folder), "--data-dir", str(tiny_data_dir), "--sts-tasks", "stsb",
                 "--retrieval-tasks", "none", "--output-dir", str(tmp_path / "out")])
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and said == (f"sbert-repro: error: --model {folder}: its weights file cannot be read (torch: the "
                                  "checkpoint is damaged or cut short); copy the model again")


def test_no_token_reaches_records_or_logs(tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch, capsys, caplog):
    secret = "hf_FAKE_TOKEN_do_not_leak_1234567890"
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY"):
        monkeypatch.setenv(name, secret)
    out = tmp_path / "run"
    with caplog.at_level(logging.DEBUG):
        assert main(["finetune", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir",
                     str(out), "--epochs", "1", "--sts-tasks", "stsb", "--retrieval-tasks", "none"]) == 0
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err + caplog.text
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


# ----------------------------------------------------------------------------- bad input through the CLI

@pytest.mark.parametrize("content, expected", [
    (b'{"sentence1": "a", "sentence2": "b", "score": 1\n', "test.jsonl:1: not valid JSON"),
    (b'{"sentence1": "a", "sentence2": "b", "score": NaN}\n', "test.jsonl:1: field 'score' must be a finite"),
    (b'{"sentence1": "a", "sentence2": "b", "score": 1e999}\n', "test.jsonl:1: field 'score' must be a finite"),
    (b'{"sentence1": "\xff", "sentence2": "b", "score": 1}\n', "test.jsonl:1: not valid UTF-8"),
    (b"", "test.jsonl: no rows; the file is empty"),
])
def test_bad_sts_files_through_the_cli(tiny_model_dir, tiny_data_dir, tmp_path, capsys, content, expected):
    broken = Path(shutil.copytree(tiny_data_dir, tmp_path / "data"))
    (broken / "sts/sts15/test.jsonl").write_bytes(content)
    code = main(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(broken),
                 "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and len(err.splitlines()) == 1 and "sts/sts15/" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("file, rows, expected", [
    ("corpus.jsonl", [{"_id": "d0", "text": "x"}, {"_id": "d0", "text": "y"}], "corpus.jsonl:2: duplicate _id 'd0'"),
    ("queries.jsonl", [{"_id": "q0", "text": ""}], "queries.jsonl:1: field 'text' must be a non-empty string"),
])
def test_bad_beir_files_through_the_cli(tiny_model_dir, tiny_data_dir, tmp_path, capsys, file, rows, expected):
    broken = Path(shutil.copytree(tiny_data_dir, tmp_path / "data"))
    write_jsonl(broken / "retrieval/scifact" / file, rows)
    code = main(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(broken), "--sts-tasks", "none",
                 "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and len(err.splitlines()) == 1


def test_qrels_naming_an_unknown_query_through_the_cli(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    # as BEIR and mteb read it: the judgement is counted and said, and the query it names is not scored
    broken = Path(shutil.copytree(tiny_data_dir, tmp_path / "data"))
    qrels = broken / "retrieval/scifact/qrels/test.tsv"
    qrels.write_text(qrels.read_text() + "ghost\td0\t1\n")
    code = main(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(broken), "--sts-tasks", "none",
                 "--retrieval-tasks", "scifact", "--output-dir", str(tmp_path / "out")])
    assert code == 0
    record = json.loads((tmp_path / "out" / "record.json").read_text())
    assert record["data_checks"]["scifact"]["judgements_without_query"] == 1


# ----------------------------------------------------------------------------- property-based parser tests

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(st.lists(st.binary(max_size=60), min_size=0, max_size=6))
def test_sts_parser_accepts_or_rejects_any_bytes_with_a_usage_error(tmp_path, lines):
    path = tmp_path / "sts/stsb/test.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines))
    try:
        pairs = data.load_sts("stsb", "test", tmp_path)
    except UsageError as error:
        assert str(error).startswith(str(path)) and "\n" not in str(error)
    else:
        assert len(pairs) > 0 and all(0 <= score <= 5 for score in pairs.scores)


json_values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                        st.text(max_size=8), st.lists(st.integers(), max_size=2))


@FAST
@given(st.lists(st.dictionaries(st.sampled_from(["sentence1", "sentence2", "score", "extra"]), json_values),
                min_size=1, max_size=5))
def test_sts_parser_on_any_json_rows(tmp_path, rows):
    path = tmp_path / "sts/sickr/test.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    try:
        pairs = data.load_sts("sickr", "test", tmp_path)
    except UsageError as error:
        assert "sickr/test.jsonl:" in str(error)
    else:
        assert all(1 <= score <= 5 for score in pairs.scores)
        assert all(isinstance(s, str) and s.strip() for s in pairs.sentences1 + pairs.sentences2)


@FAST
@given(st.lists(st.text(alphabet="qd01\t x-", max_size=12), max_size=6))
def test_qrels_parser_accepts_or_rejects_any_lines(tmp_path, lines):
    folder = tmp_path / "retrieval/scifact"
    write_jsonl(folder / "corpus.jsonl", [{"_id": "d0", "text": "x"}, {"_id": "d1", "text": "y"}])
    write_jsonl(folder / "queries.jsonl", [{"_id": "q0", "text": "x"}, {"_id": "q1", "text": "y"}])
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels/test.tsv").write_text("\n".join(lines))
    try:
        loaded = data.load_retrieval("scifact", tmp_path)
    except UsageError as error:
        assert "qrels/test.tsv" in str(error)
    else:
        assert set(loaded.queries) == set(loaded.qrels) <= {"q0", "q1"}
