"""Faults an unlucky user meets, each ending in one line with nothing lost: make_tables stopped, raced or fed a bad
record; a disk that fills up (or a folder that cannot be written) while a run writes; a checkpoint that cannot be
loaded; an output folder that is a symbolic link. Writes are made to fail by patching them, not by filling a disk."""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, TEST_ENVIRONMENT
from test_nothing_lost import HOLDER, contents, evaluate_args, interrupt_training_at_step, results_with_two_runs

from sbert_repro.cli.main import main
from sbert_repro.report import pages
from sbert_repro.report.results_page import README_BLOCK


def one_line(err: str, *expected: str) -> str:
    """The one error (or interrupt) line of a command's stderr, holding each of `expected`; no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error:" in line or "interrupted" in line]
    assert len(lines) == 1, err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- make_tables

@pytest.fixture
def results(tmp_path) -> Path:
    """A small results folder, made once by make_tables, and a README with its generated block."""
    folder = results_with_two_runs(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_BLOCK[0]}old\n{README_BLOCK[1]}", encoding="utf-8")
    assert tables(folder) == 0
    return folder


def tables(folder: Path, *extra: str) -> int:
    from sbert_repro.cli.tables import make_tables_script

    return make_tables_script(["--results-dir", str(folder), "--readme", str(folder.parent / "README.md"),
                               *extra], REPO_ROOT)


def test_make_tables_says_every_file_it_wrote(results, capsys):
    capsys.readouterr()
    assert tables(results) == 0
    said = capsys.readouterr().out.strip()
    plots = sorted((results / "plots").glob("*.png"))
    pages = sorted(path for path in results.glob("*.md"))
    assert plots and said.startswith("wrote ") and said.endswith(f", and {len(plots)} plots in {results / 'plots'}")
    assert all(str(page) in said for page in pages) and str(results.parent / "README.md") in said


def test_make_tables_stopped_with_ctrl_c_is_one_line_and_keeps_the_last_pages(results, monkeypatch, capsys):
    before = contents(results.parent)
    capsys.readouterr()
    monkeypatch.setenv("SBERT_REPRO_KILL_AT", "plots-drawn:INT")
    assert tables(results) == 130
    one_line(capsys.readouterr().err, "make_tables.py: interrupted; the pages and plots", "last complete")
    assert contents(results.parent) == before


BAD_RECORDS = {
    "empty object": ("{}", "field kind: missing; one of finetune, evaluate"),
    "a list": ("[1, 2]", "a JSON list, not an object"),
    "no kind": (json.dumps({"status": "complete", "config": {}}), "field kind: missing"),
    "config a string": (json.dumps({"kind": "finetune", "config": "x", "environment": TEST_ENVIRONMENT,
                                    "baseline": {"scores": {}}}), "field config: input should be"),
    "no environment": (json.dumps({"kind": "evaluate", "config": {}, "scores": {}}), "field environment: missing"),
    "a seed as text": (json.dumps({"kind": "evaluate", "config": {"seed": "3"}, "environment": TEST_ENVIRONMENT,
                                   "scores": {}}), "field config.seed: input should be a valid integer"),
    "truncated copy": ('{"kind": "finetune", "conf', "not a readable run record"),
    "merge conflict": ('<<<<<<< HEAD\n{"kind": "finetune"}\n=======\n', "not a readable run record"),
    "NaN score": ('{"kind": "evaluate", "config": {}, "scores": {"stsb/spearman": NaN}}', "holds NaN"),
    "no scores": (json.dumps({"kind": "finetune", "config": {"seed": 3}, "environment": TEST_ENVIRONMENT,
                              "baseline": {"scores": {}}}), "a finished fine-tune's record holds its 'finetuned'"),
}


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_a_bad_record_is_named_in_one_line_and_nothing_is_written(results, capsys, case):
    content, said = BAD_RECORDS[case]
    bad = results / "records" / "zz-bad" / "record.json"
    bad.parent.mkdir()
    bad.write_text(content, encoding="utf-8")
    before = contents(results.parent)
    capsys.readouterr()
    assert tables(results) == 2
    one_line(capsys.readouterr().err, f"make_tables.py: error: {bad}", said)
    assert contents(results.parent) == before


def test_a_plot_that_cannot_be_written_is_one_line_and_the_pages_stay(results, monkeypatch, capsys):
    import matplotlib.figure

    before = contents(results.parent)

    def full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    capsys.readouterr()
    assert tables(results) == 2
    one_line(capsys.readouterr().err, "cannot write it (the disk is full); free some space, then run make_tables again")
    assert contents(results.parent) == before


def test_a_second_make_tables_is_refused_with_the_first_ones_pid(results, capsys):
    before = contents(results), (results.parent / "README.md").read_bytes()  # the killed holder leaves its lock file
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.replace("--output-dir", "--results-dir"), str(results)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        capsys.readouterr()
        assert tables(results) == 2
        one_line(capsys.readouterr().err, f"--results-dir {results}: another process (pid {holder.pid}) is writing")
    finally:
        holder.kill()
        holder.wait()
    assert (contents(results), (results.parent / "README.md").read_bytes()) == before


def test_make_tables_run_twice_at_once_leaves_results_as_one_run_does(tmp_path):
    once = results_with_two_runs(tmp_path / "once")
    twice = results_with_two_runs(tmp_path / "twice")
    for folder in (once, twice):
        (folder.parent / "README.md").write_text("".join(README_BLOCK), encoding="utf-8")
    pages.make_tables(once, readme=once.parent / "README.md")
    command = [sys.executable, str(REPO_ROOT / "scripts" / "make_tables.py"), "--results-dir", str(twice),
               "--readme", str(twice.parent / "README.md")]
    racers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(racer.wait(timeout=300), racer.stderr.read()) for racer in racers]
    for code, err in outcomes:
        assert code in (0, 2) and "Traceback" not in err, err
        if code == 2:
            one_line(err, "is writing to it")
    assert 0 in [code for code, _ in outcomes]
    assert contents(twice) == contents(once)
    assert (twice.parent / "README.md").read_bytes() == (once.parent / "README.md").read_bytes()


# ----------------------------------------------------------------------------- a run that cannot write

def train_args(model: Path, data_dir: Path, out: Path, *extra: str) -> list[str]:
    """12 steps (96 pairs, batch 8, 1 epoch), a checkpoint every 4."""
    return ["finetune", "--model", str(model), "--data-dir", str(data_dir), "--output-dir", str(out), "--epochs", "1",
            "--batch-size", "8", "--lr", "3e-3", "--save-steps", "4", "--sts-tasks", "stsb", "--retrieval-tasks",
            "none", "--device", "cpu", "--precision", "fp32", *extra]


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, tiny_data_dir, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert main(train_args(tiny_model_dir, tiny_data_dir, out)) == 0
    return json.loads((out / "record.json").read_text())


@pytest.fixture(scope="module")
def interrupted(tiny_model_dir, tiny_data_dir, tmp_path_factory) -> Path:
    """A run stopped with Ctrl-C in step 10: checkpoint-4 and checkpoint-8 are complete."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    with pytest.MonkeyPatch.context() as patch:
        interrupt_training_at_step(patch, 10)
        assert main(train_args(tiny_model_dir, tiny_data_dir, out)) == 130
    assert sorted(p.name for p in (out / "checkpoints" / "sts-cosine").glob("checkpoint-*")) == ["checkpoint-4",
                                                                                                "checkpoint-8"]
    return out


@pytest.fixture
def run_copy(interrupted, tmp_path) -> Path:
    return Path(shutil.copytree(interrupted, tmp_path / "run"))


def resume(line: str) -> list[str]:
    """The command an error line says continues the run, as main's arguments."""
    command = shlex.split(line.split("then continue with: ", 1)[1])
    assert command[:2] == ["sbert-repro", "finetune"] and command[-1] == "--resume"
    return command[1:]


def fail_writing(monkeypatch, name: str, error: BaseException) -> None:
    """torch.save of a checkpoint's file `name` fails with `error` (a full disk: torch's writer raises RuntimeError)."""
    original = torch.save

    def save(obj, f, *args, **kwargs):
        if str(f).endswith(name):
            raise error
        return original(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)


def test_a_disk_full_while_a_checkpoint_is_written_is_one_line_and_resume_reaches_the_same_scores(
        uninterrupted, tiny_model_dir, tiny_data_dir, run_copy, capsys, monkeypatch):
    checkpoints = run_copy / "checkpoints" / "sts-cosine"
    kept = contents(checkpoints)
    torch_full = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    with monkeypatch.context() as patch:
        fail_writing(patch, "optimizer.pt", torch_full)
        capsys.readouterr()
        assert main([*train_args(tiny_model_dir, tiny_data_dir, run_copy), "--resume"]) == 2
    line = one_line(capsys.readouterr().err, f"{checkpoints / 'checkpoint-12'}: cannot write it",
                    "checkpoint-8 and those before it are kept", "free some space, then continue with: ")
    assert {name: data for name, data in contents(checkpoints).items() if name in kept} == kept
    assert main(resume(line)) == 0
    record = json.loads((run_copy / "record.json").read_text())
    assert record["finetuned"]["scores"] == uninterrupted["finetuned"]["scores"]


@pytest.mark.parametrize("error, said", [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "(the disk is full; checkpoint-8 and those before it are kept)"
                                                       "; free some space, then continue with: "),
    (PermissionError(errno.EACCES, os.strerror(errno.EACCES)), "(no permission to write there; checkpoint-8 and "
                                                              "those before it are kept); make it writable"),
])
def test_a_checkpoint_folder_that_cannot_be_written_is_one_line(tiny_model_dir, tiny_data_dir, run_copy, capsys,
                                                                monkeypatch, error, said):
    checkpoints = run_copy / "checkpoints" / "sts-cosine"
    kept = contents(checkpoints)
    fail_writing(monkeypatch, "rng_state.pth", error)
    capsys.readouterr()
    assert main([*train_args(tiny_model_dir, tiny_data_dir, run_copy), "--resume"]) == 2
    one_line(capsys.readouterr().err, f"{checkpoints / 'checkpoint-12'}: cannot write it", said)
    assert {name: data for name, data in contents(checkpoints).items() if name in kept} == kept


def test_resume_with_a_checkpoint_folder_it_cannot_tidy_is_one_line(tiny_model_dir, tiny_data_dir, run_copy, capsys,
                                                                    monkeypatch):
    from sbert_repro.train import checkpoints

    half = run_copy / "checkpoints" / "sts-cosine" / "checkpoint-12"  # killed while being written
    half.mkdir()
    (half / "config.json").write_text("{}")

    rmtree = shutil.rmtree

    def read_only(path, *args, **kwargs):
        if Path(path).parent.name != "sts-cosine":
            return rmtree(path, *args, **kwargs)
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(checkpoints.shutil, "rmtree", read_only)
    capsys.readouterr()
    assert main([*train_args(tiny_model_dir, tiny_data_dir, run_copy), "--resume"]) == 2
    one_line(capsys.readouterr().err, "cannot write it (no permission to write there); make it writable",
             "then continue with: ")
    assert half.is_dir()


def test_a_disk_full_while_the_model_is_saved_is_one_line_and_resume_finishes_the_run(
        uninterrupted, tiny_model_dir, tiny_data_dir, run_copy, capsys, monkeypatch):
    from sentence_transformers import SentenceTransformer

    out = run_copy

    save = SentenceTransformer.save

    def full(self, path, *args, **kwargs):  # the model, not a checkpoint (the Trainer saves those with it too)
        if Path(path).name != "model":
            return save(self, path, *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(path) / "model.safetensors"))

    with monkeypatch.context() as patch:
        patch.setattr(SentenceTransformer, "save", full)
        capsys.readouterr()
        assert main([*train_args(tiny_model_dir, tiny_data_dir, out), "--resume"]) == 2
    line = one_line(capsys.readouterr().err, f"{out / 'model'}: cannot write it (the disk is full); free some space, "
                                             "then continue with: ")
    assert json.loads((out / "record.json").read_text())["status"] == "incomplete"
    assert main(resume(line)) == 0
    record = json.loads((out / "record.json").read_text())
    assert record["status"] == "complete" and record["finetuned"]["scores"] == uninterrupted["finetuned"]["scores"]


# ----------------------------------------------------------------------------- checkpoints that cannot be loaded

class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGES = {
    "truncated weights": lambda folder, marker: truncate(folder / "model.safetensors"),
    "a foreign file": lambda folder, marker: (folder / "optimizer.pt").write_bytes(b"<html>not a checkpoint</html>"),
    "code in a pickle": lambda folder, marker: torch.save({"state": _Exploit(marker)}, folder / "optimizer.pt"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_checkpoint_that_cannot_be_loaded_is_set_aside_and_resume_goes_on_from_the_one_before(
        uninterrupted, tiny_model_dir, tiny_data_dir, run_copy, capsys, caplog, damage):
    checkpoints = run_copy / "checkpoints" / "sts-cosine"
    marker = run_copy.parent / "pwned"
    everything = damage == "code in a pickle"  # then none is usable: the run starts afresh
    for folder in [checkpoints / "checkpoint-8", *([checkpoints / "checkpoint-4"] if everything else [])]:
        DAMAGES[damage](folder, marker)
    damaged = contents(checkpoints / "checkpoint-8")
    capsys.readouterr()
    assert main([*train_args(tiny_model_dir, tiny_data_dir, run_copy), "--resume"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert not marker.exists()  # nothing was unpickled with code execution
    [warning] = [r.getMessage() for r in caplog.records
                 if r.levelname == "WARNING" and "checkpoint-8" in r.getMessage()]
    assert warning.startswith("checkpoint-8: cannot be loaded (")
    assert warning.endswith("set aside as unusable-checkpoint-8, not deleted; "
                            + ("no usable checkpoint, starting afresh" if everything else "resuming from checkpoint-4"))
    assert contents(checkpoints / "unusable-checkpoint-8") == damaged  # kept, as it was, after the run finished
    record = json.loads((run_copy / "record.json").read_text())
    assert record["training"]["resumed_from"] == (None if everything else "checkpoints/sts-cosine/checkpoint-4")
    assert record["finetuned"]["scores"] == uninterrupted["finetuned"]["scores"]


# ----------------------------------------------------------------------------- output folders that are links

def test_overwrite_through_a_symbolic_link_replaces_the_folder_it_points_at(tiny_model_dir, tiny_data_dir, tmp_path,
                                                                             capsys, monkeypatch):
    real, link = tmp_path / "real", tmp_path / "link"
    assert main(evaluate_args(tiny_model_dir, tiny_data_dir, real)) == 0
    link.symlink_to(real)
    for _ in range(2):  # twice: nothing the first one left may stop the second
        assert main([*evaluate_args(tiny_model_dir, tiny_data_dir, link), "--overwrite"]) == 0
        assert link.is_symlink() and link.resolve() == real.resolve()
        assert "--overwrite" in json.loads((real / "record.json").read_text())["config"]["argv"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]  # no .link.old, no staging
    before = contents(real)
    monkeypatch.setenv("SBERT_REPRO_KILL_AT", "mid-swap:INT")  # a swap that fails half-way
    capsys.readouterr()
    assert main([*evaluate_args(tiny_model_dir, tiny_data_dir, link), "--overwrite", "--sts-tasks", "sickr"]) == 130
    one_line(capsys.readouterr().err, f"the previous run in {link} is unchanged")
    assert link.is_symlink() and contents(real) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_resume_refuses_a_model_or_data_changed_at_the_same_path(tiny_model_dir, tiny_data_dir, run_copy, capsys):
    from safetensors.torch import load_file, save_file

    def reorder(path: Path) -> None:
        path.write_text("".join(reversed(path.read_text().splitlines(keepends=True))))

    def retrain(path: Path) -> None:
        weights = load_file(path)
        name = sorted(weights)[0]
        save_file({**weights, name: weights[name] + 0.01}, path, metadata={"format": "pt"})

    record = run_copy / "record.json"
    recorded = record.read_bytes()
    for path, change, said in [
            (tiny_data_dir / "sts/stsb/train.jsonl", reorder, "the data of train (sts-cosine) changed (edited or "
                                                              "reordered)"),
            (tiny_model_dir / "model.safetensors", retrain, f"{tiny_model_dir} holds other weights or another "
                                                            "tokenizer than it began with")]:
        original = path.read_bytes()
        try:
            change(path)
            capsys.readouterr()
            assert main([*train_args(tiny_model_dir, tiny_data_dir, run_copy), "--resume"]) == 2
            one_line(capsys.readouterr().err, f"--resume: {said} since the run in {run_copy} began; resume with the "
                     "model and data it began with, or start afresh with --overwrite")
        finally:
            path.write_bytes(original)
        assert record.read_bytes() == recorded
