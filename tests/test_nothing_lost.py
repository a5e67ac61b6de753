"""Nothing lost: --overwrite replaces a run or an index only when the new one is complete, one writer per
folder, and kills at chosen steps (SBERT_REPRO_KILL_AT) leave the previous outputs intact and no debris."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import write_jsonl

from sbert_repro.cli.main import default_output_dir, main
from sbert_repro.errors import UsageError


def evaluate_args(model: Path, data_dir: Path, out: Path) -> list[str]:
    return ["evaluate", "--model", str(model), "--data-dir", str(data_dir), "--output-dir", str(out),
            "--sts-tasks", "stsb", "--retrieval-tasks", "none", "--device", "cpu"]


def finetune_args(model: Path, data_dir: Path, out: Path) -> list[str]:
    return ["finetune", "--model", str(model), "--data-dir", str(data_dir), "--output-dir", str(out),
            "--epochs", "1", "--batch-size", "16", "--sts-tasks", "stsb", "--retrieval-tasks", "none",
            "--device", "cpu", "--precision", "fp32"]


def index_args(model: Path, corpus: Path, out: Path) -> list[str]:
    return ["index", "--model", str(model), "--corpus", str(corpus), "--output-dir", str(out), "--device", "cpu",
            "--precision", "fp32", "--chunk-size", "4"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rows = [{"_id": f"doc-{word}", "text": f"we like the {word}"} for word in ("cat", "dog", "rain", "car", "bus")]
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", rows)


def contents(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(args: list[str], kill_at: str) -> subprocess.CompletedProcess:
    """The command in a process of its own, stopped at `kill_at` (SIGKILL: no cleanup code runs)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SBERT_REPRO_KILL_AT": kill_at}
    return subprocess.run([sys.executable, "-c", "import sys; from sbert_repro.cli.main import main; sys.exit(main())",
                           *args], env=env, capture_output=True, text=True, timeout=600)


def assert_no_debris(parent: Path) -> None:
    assert [p.name for p in parent.iterdir() if p.name.startswith(".")] == []


# ----------------------------------------------------------------------------- replace on success only

@pytest.mark.parametrize("step", ["before-swap", "mid-swap"])
def test_an_interrupted_overwrite_keeps_the_previous_run(tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch,
                                                         capsys, step):
    run = tmp_path / "run"
    assert main(evaluate_args(tiny_model_dir, tiny_data_dir, run)) == 0
    before = contents(run)
    monkeypatch.setenv("SBERT_REPRO_KILL_AT", f"{step}:INT")  # a Ctrl-C at that step
    assert main([*evaluate_args(tiny_model_dir, tiny_data_dir, run), "--overwrite"]) == 130
    assert contents(run) == before
    assert_no_debris(tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err) and err[-1].startswith(f"sbert-repro: interrupted while replacing {run};")
    assert f"the previous run in {run} is unchanged" in err[-1]


def test_a_failed_overwrite_keeps_the_previous_run(tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert main(evaluate_args(tiny_model_dir, tiny_data_dir, run)) == 0
    before = contents(run)

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("sbert_repro.pipeline.evaluate_run.write_text_atomic", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        main([*evaluate_args(tiny_model_dir, tiny_data_dir, run), "--overwrite"])
    assert contents(run) == before
    assert_no_debris(tmp_path)


def test_a_killed_finetune_overwrite_keeps_the_previous_run_and_a_retry_tidies_up(tiny_model_dir, tiny_data_dir,
                                                                                  tmp_path):
    run = tmp_path / "run"
    assert main(finetune_args(tiny_model_dir, tiny_data_dir, run)) == 0
    before = contents(run)
    killed = run_cli([*finetune_args(tiny_model_dir, tiny_data_dir, run), "--overwrite"], "before-swap")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert contents(run) == before  # the new run was complete beside it, but never swapped in
    assert main([*finetune_args(tiny_model_dir, tiny_data_dir, run), "--overwrite", "--seed", "7"]) == 0
    record = json.loads((run / "record.json").read_text())
    assert record["config"]["seed"] == 7
    assert record["training"]["best_checkpoint"].startswith("checkpoints/")  # in the run's folder, wherever it is
    assert_no_debris(tmp_path)


def test_a_kill_between_the_two_renames_puts_the_old_index_back(tiny_model_dir, corpus, tmp_path, capsys):
    folder = tmp_path / "idx"
    assert main(index_args(tiny_model_dir, corpus, folder)) == 0
    before = contents(folder)
    killed = run_cli([*index_args(tiny_model_dir, corpus, folder), "--overwrite", "--index", "HNSW8"], "mid-swap")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not folder.exists()  # killed with the old index renamed away and the new one not yet in
    # a search meanwhile says where the old index is and how to get it back
    capsys.readouterr()
    assert main(["search", "--index-dir", str(folder), "--device", "cpu", "the cat"]) == 2
    said = capsys.readouterr().err.strip()
    assert said.endswith(f"an interrupted --overwrite moved the previous folder to {tmp_path / '.idx.old'}: run that "
                         "command again (it puts the folder back first), or rename .idx.old back to idx"), said
    # the next command to take the folder puts the old index back before anything else
    assert main([*index_args(tiny_model_dir, corpus, folder), "--resume"]) == 0
    assert json.loads((folder / "index.json").read_text())["config"]["index"] == "Flat"
    assert contents(folder)["embeddings.f32"] == before["embeddings.f32"]
    assert_no_debris(tmp_path)


def test_an_interrupted_index_overwrite_leaves_the_old_index_searchable(tiny_model_dir, corpus, tmp_path, capsys):
    folder = tmp_path / "idx"
    assert main(index_args(tiny_model_dir, corpus, folder)) == 0
    before = contents(folder)
    killed = run_cli([*index_args(tiny_model_dir, corpus, folder), "--overwrite", "--index", "HNSW8"],
                     "before-swap")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert contents(folder) == before
    capsys.readouterr()
    assert main(["search", "--index-dir", str(folder), "--device", "cpu", "--top-k", "1", "the cat"]) == 0
    assert "doc-cat" in capsys.readouterr().out


# ----------------------------------------------------------------------------- one writer per folder

HOLDER = """
import sys, time
from pathlib import Path
from sbert_repro.runs.folders import locked
with locked(Path(sys.argv[1]), "--output-dir"):
    print("holding", flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize("command", ["evaluate", "finetune", "index", "finetune --resume"])
def test_a_second_writer_is_refused_with_the_first_ones_pid(tiny_model_dir, tiny_data_dir, corpus, tmp_path,
                                                            capsys, command):
    run = tmp_path / "run"
    if command == "finetune --resume":  # an interrupted run: only its first writer may continue it
        run.mkdir()
        (run / "record.json").write_text('{"status": "incomplete"}')
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        args = {"evaluate": evaluate_args(tiny_model_dir, tiny_data_dir, run),
                "finetune": finetune_args(tiny_model_dir, tiny_data_dir, run),
                "index": index_args(tiny_model_dir, corpus, run),
                "finetune --resume": [*finetune_args(tiny_model_dir, tiny_data_dir, run), "--resume"]}[command]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert f"--output-dir {run}: another process (pid {holder.pid}) is writing to it" in err
    finally:
        holder.kill()
        holder.wait()
    assert not (run / "scores.md").exists() and not (run / "index.json").exists()


def test_the_lock_goes_with_its_holder(tiny_model_dir, tiny_data_dir, tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    holder.kill()  # a killed writer leaves its lock file, but the kernel has dropped the lock
    holder.wait()
    assert main(evaluate_args(tiny_model_dir, tiny_data_dir, run)) == 0
    assert_no_debris(tmp_path)


def test_the_lock_of_the_current_folder_sits_beside_it(tmp_path, monkeypatch):
    from sbert_repro.runs.folders import check_not_busy, locked

    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    with locked(Path("."), "--output-dir"):
        assert (tmp_path / ".run.lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(UsageError, match=rf"--output-dir \.: another process \(pid {os.getpid()}\)"):
            check_not_busy(Path("."), "--output-dir")
    assert_no_debris(tmp_path)


def test_default_run_folders_of_the_same_second_differ():
    now = datetime(2026, 1, 2, 3, 4, 5, 100)
    assert default_output_dir("m", now) != default_output_dir("m", now + timedelta(microseconds=1))
    assert default_output_dir("org/m", now).parent == Path("runs")



# ----------------------------------------------------------------------------- checkpoints and Ctrl-C

def interrupt_training_at_step(monkeypatch, step: int) -> None:
    """A Ctrl-C in the middle of training step `step`."""
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss

    original, calls = CosineSimilarityLoss.forward, []

    def forward(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CosineSimilarityLoss, "forward", forward)


def test_ctrl_c_in_training_says_how_to_continue_and_resume_skips_a_half_written_checkpoint(
        tiny_model_dir, tiny_data_dir, tmp_path, monkeypatch, capsys, caplog):
    run = tmp_path / "run"
    args = [*finetune_args(tiny_model_dir, tiny_data_dir, run), "--batch-size", "8", "--epochs", "2",
            "--save-steps", "5"]
    with monkeypatch.context() as patch:
        interrupt_training_at_step(patch, 8)
        assert main(args) == 130
    err = capsys.readouterr().err
    # one line (a progress bar cut off by the Ctrl-C may be closed after it)
    [line] = [line for line in err.splitlines() if "interrupted" in line]
    assert "Traceback" not in err
    assert line.startswith("sbert-repro: interrupted while training (seed 42); continue with: sbert-repro ")
    command = shlex.split(line.split("continue with: ", 1)[1])
    assert command[:2] == ["sbert-repro", "finetune"] and command[-1] == "--resume"

    # A checkpoint killed while being written: its config files, but no weights and no trainer_state.json.
    checkpoints = run / "checkpoints" / "sts-cosine"
    half = checkpoints / "checkpoint-10"
    half.mkdir()
    for name in ("config.json", "modules.json", "tokenizer_config.json"):
        shutil.copyfile(checkpoints / "checkpoint-5" / name, half / name)
    assert main(command[1:]) == 0
    record = json.loads((run / "record.json").read_text())
    assert record["status"] == "complete" and record["training"]["resumed_from"].endswith("checkpoint-5")
    warnings = [r.getMessage() for r in caplog.records
                if r.levelname == "WARNING" and "checkpoint-10" in r.getMessage()]
    assert warnings == ["checkpoint-10: incomplete (the run stopped while saving it), deleted; resuming from "
                        "checkpoint-5"]


def test_ctrl_c_in_an_encode_says_how_to_continue_and_the_resume_finishes_it(tiny_model_dir, corpus, tmp_path,
                                                                             monkeypatch, capsys):
    whole = tmp_path / "whole"
    assert main(index_args(tiny_model_dir, corpus, whole)) == 0
    folder = tmp_path / "idx"
    monkeypatch.setenv("SBERT_REPRO_KILL_AT", "encoded-chunk:INT")  # a Ctrl-C after the first chunk of 4 rows
    capsys.readouterr()
    assert main(index_args(tiny_model_dir, corpus, folder)) == 130
    [line] = [line for line in capsys.readouterr().err.splitlines() if "interrupted" in line]
    assert line.startswith("sbert-repro: interrupted while encoding the corpus (4 of 5 rows done); continue with: ")
    monkeypatch.delenv("SBERT_REPRO_KILL_AT")
    assert main(shlex.split(line.split("continue with: ", 1)[1])[1:]) == 0
    assert (folder / "embeddings.f32").read_bytes() == (whole / "embeddings.f32").read_bytes()


def test_with_no_complete_checkpoint_resume_starts_afresh(tmp_path, caplog):
    from sbert_repro.train.checkpoints import last_complete_checkpoint

    (tmp_path / "checkpoint-5").mkdir()
    (tmp_path / "checkpoint-5" / "config.json").write_text("{}")
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "checkpoint-3" / "trainer_state.json").write_text('{"global_step": 3')  # cut off mid-write
    assert last_complete_checkpoint(tmp_path) is None and (tmp_path / "checkpoint-5").is_dir()
    assert last_complete_checkpoint(tmp_path, tidy=True) is None
    assert list(tmp_path.iterdir()) == []
    assert "no complete checkpoint, starting afresh" in caplog.text


# ----------------------------------------------------------------------------- make_tables

def results_with_two_runs(tmp_path: Path) -> Path:
    from test_tables import fake_record, write_run

    results = tmp_path / "results"
    write_run(results / "records", "run-a", [fake_record(1, 80.0), fake_record(2, 82.0)])
    write_run(results / "records", "run-b", [fake_record(1, 75.0, pooling="cls")])
    return results


def test_an_interrupted_make_tables_keeps_the_plots_its_pages_link(tmp_path, monkeypatch):
    from sbert_repro.report import pages, results_page

    results = results_with_two_runs(tmp_path)
    pages.make_tables(results)
    before = contents(results)
    assert any(name.startswith("plots/") for name in before)
    original, calls = results_page.plot_validation, []

    def interrupted(*args, **kwargs):  # a Ctrl-C while the second run's plots are drawn
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(results_page, "plot_validation", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pages.make_tables(results)
    assert contents(results) == before
    assert_no_debris(results)


def test_a_killed_add_leaves_no_half_run_and_a_retry_works(tmp_path, monkeypatch):
    from test_tables import fake_record, write_run

    from sbert_repro.report import pages

    results = results_with_two_runs(tmp_path)
    write_run(tmp_path / "runs", "new-run", [fake_record(1, 90.0), fake_record(2, 91.0)])
    original, calls = Path.write_bytes, []

    def killed(*args, **kwargs):  # a Ctrl-C after the first of the two records was copied
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "write_bytes", killed)
        with pytest.raises(KeyboardInterrupt):
            pages.make_tables(results, add=[tmp_path / "runs" / "new-run"])
    assert not (results / "records" / "new-run").exists()
    assert_no_debris(results)
    # killed after the copy, before the plots are moved in: the records are in, and the same --add again is not
    # refused
    monkeypatch.setenv("SBERT_REPRO_KILL_AT", "records-added:INT")
    with pytest.raises(KeyboardInterrupt):
        pages.make_tables(results, add=[tmp_path / "runs" / "new-run"])
    assert len(list((results / "records" / "new-run").rglob("record.json"))) == 2
    monkeypatch.delenv("SBERT_REPRO_KILL_AT")
    pages.make_tables(results, add=[tmp_path / "runs" / "new-run"])
    assert "new-run" in (results / "README.md").read_text()
    assert_no_debris(results)


def test_a_sigterm_ends_a_command_as_a_ctrl_c_does_with_one_line_and_143(tiny_model_dir, tiny_data_dir, tmp_path,
                                                                         monkeypatch, capsys):
    """`kill`, or a scheduler's time limit: the run's cleanup runs and one line says how to continue."""
    import signal

    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss

    forward = CosineSimilarityLoss.forward
    calls = []

    def terminated_at_step_3(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(CosineSimilarityLoss, "forward", terminated_at_step_3)
    run = tmp_path / "run"
    assert main([*finetune_args(tiny_model_dir, tiny_data_dir, run), "--batch-size", "8"]) == 143
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if "interrupted" in line]
    assert "Traceback" not in err and line.startswith("sbert-repro: interrupted while training (seed 42); continue")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is the command's alone
