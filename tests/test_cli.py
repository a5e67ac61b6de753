"""scripts/finetune.py and `sbert-repro` end to end on a tiny random BERT and tiny data, and every user
error through the command line: one line on stderr, exit status 2, nothing written or damaged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from sbert_repro.cli.main import main
from sbert_repro.config.encoding import EvaluateConfig
from sbert_repro.config.indexing import IndexConfig
from sbert_repro.config.training import TrainConfig
from sbert_repro.data.loaders import load_sts
from sbert_repro.errors import UsageError
from sbert_repro.evaluation.scoring import score_sts

SCRIPT = REPO_ROOT / "scripts" / "finetune.py"


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir: Path, tiny_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fine-tune of the tiny model; a high learning rate so 8 epochs of 96 pairs visibly learn."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    code = main(["finetune", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir),
                 "--output-dir", str(run_dir), "--epochs", "8", "--batch-size", "8", "--lr", "3e-3",
                 "--device", "cpu"])
    assert code == 0
    return run_dir


def test_a_committed_run_carries_its_per_query_scores_and_compare_reads_them(tiny_run: Path, tmp_path, capsys):
    from sbert_repro.report import pages

    pages.make_tables(tmp_path / "results", add=[tiny_run])
    committed = tmp_path / "results" / "records" / tiny_run.name
    for folder in (committed, committed / "baseline"):
        assert sorted(p.name for p in (folder / "retrieval").iterdir()) == [
            "scifact.per-query.json", "stsb-retrieval.per-query.json"]  # no TREC runs: megabytes, and not re-checked
    assert list((committed / "mteb-format" / "results").glob("*/*/STSBenchmark.json"))
    capsys.readouterr()
    assert main(["compare", str(committed / "baseline"), str(committed)]) == 0  # raw against fine-tuned
    assert "scifact" in capsys.readouterr().out


def test_finetune_writes_every_output(tiny_run: Path):
    # baseline/ and retrieval/: the raw and the fine-tuned model's TREC run files and per-query scores;
    # mteb-format/: both models' scores as MTEB's result files
    assert {p.name for p in tiny_run.iterdir()} == {"record.json", "gains.md", "model", "baseline", "retrieval",
                                                    "mteb-format"}
    record = json.loads((tiny_run / "record.json").read_text())
    assert record["config"]["seed"] == 42 and record["config"]["epochs"] == 8
    assert record["environment"]["packages"]["sentence-transformers"]
    assert "commit" in record["environment"]["git"]
    assert record["environment"]["hardware"]["device"] == "cpu"
    for stage in ("load_data_s", "build_model_s", "baseline_eval_s", "train_s", "finetuned_eval_s", "total_s"):
        assert record["timings"][stage] > 0
    assert record["training"]["steps"] == 8 * 12
    assert record["training"]["steps_per_s"] > 0 and record["training"]["samples_per_s"] > 0
    assert [entry["epoch"] for entry in record["training"]["validation_history"]] == [float(e) for e in range(1, 9)]
    for stage in ("baseline", "finetuned"):
        scores = record[stage]["scores"]
        seven = [scores[f"{task}/spearman"] for task in ("sts12", "sts13", "sts14", "sts15", "sts16", "stsb", "sickr")]
        assert len(set(seven)) > 1  # seven different sets, seven different correlations
        assert scores["sts-avg/spearman"] == pytest.approx(sum(seven) / 7)
        for task in ("scifact", "stsb-retrieval"):  # deeper cuts find more
            assert scores[f"{task}/recall@1"] <= scores[f"{task}/recall@10"] <= scores[f"{task}/recall@100"] <= 100
        # one relevant document per scifact query here: MRR and nDCG lie between recall@1 and recall@10
        for metric in ("mrr@10", "ndcg@10"):
            assert scores["scifact/recall@1"] <= scores[f"scifact/{metric}"] <= scores["scifact/recall@10"]
        assert record[stage]["speeds"]["scifact/corpus_encode_per_s"] > 0
    table = (tiny_run / "gains.md").read_text()
    assert "| task | metric | baseline | fine-tuned | gain | paper, bert-base-uncased |" in table
    assert "| stsb | spearman |" in table and "46.35 -> 84.67 +- 0.19" in table
    assert "| scifact | ndcg@10 |" in table and "| stsb-retrieval | ndcg@10 |" in table


def test_training_measurably_learns(tiny_run: Path):
    record = json.loads((tiny_run / "record.json").read_text())
    gain = record["finetuned"]["scores"]["stsb/spearman"] - record["baseline"]["scores"]["stsb/spearman"]
    assert gain > 10, f"STSb Spearman moved by only {gain:.2f}"
    history = [entry["validation_spearman"] for entry in record["training"]["validation_history"]]
    assert record["training"]["best_validation_spearman"] == max(history)


def test_saved_model_reloads_and_scores_what_was_recorded(tiny_run: Path, tiny_data_dir: Path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_run / "model"), device="cpu")
    scores, _ = score_sts(model, load_sts("stsb", "test", tiny_data_dir), batch_size=16)
    record = json.loads((tiny_run / "record.json").read_text())
    assert scores["spearman"] == pytest.approx(record["finetuned"]["scores"]["stsb/spearman"], abs=1e-4)


def test_several_seeds_share_the_baseline_and_report_mean_and_std(tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "seeds"
    code = main(["finetune", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir",
                 str(out), "--epochs", "1", "--batch-size", "16", "--lr", "3e-3", "--seeds", "2", "--seed", "7",
                 "--sts-tasks", "stsb", "--retrieval-tasks", "none"])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"seed-7", "seed-8", "gains.md"}
    records = [json.loads((out / f"seed-{seed}" / "record.json").read_text()) for seed in (7, 8)]
    assert [r["config"]["seed"] for r in records] == [7, 8]
    assert all(r["config"]["seeds"] == [7, 8] for r in records)
    assert records[0]["baseline"] == records[1]["baseline"]
    finetuned = [r["finetuned"]["scores"]["stsb/spearman"] for r in records]
    assert finetuned[0] != finetuned[1]  # different seeds, different data order
    mean = sum(finetuned) / 2
    std = abs(finetuned[0] - finetuned[1]) / 2 ** 0.5  # sample std of two values
    assert f"| stsb | spearman | {records[0]['baseline']['scores']['stsb/spearman']:.2f} | {mean:.2f} +- {std:.2f} |" \
        in (out / "gains.md").read_text()
    assert "mean +- std over 2 seeds (7, 8)" in (out / "gains.md").read_text()


@pytest.mark.parametrize("seeds, expected", [("3", (42, 43, 44)), ("5,1,9", (5, 1, 9)), (None, (42,))])
def test_seeds_option(seeds, expected):
    from sbert_repro.cli.main import parse_seeds

    assert parse_seeds(seeds, 42) == expected


def test_evaluate_command_scores_without_training(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    code = main(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir),
                 "--sts-tasks", "stsb", "--retrieval-tasks", "none", "--output-dir", str(tmp_path / "eval")])
    assert code == 0
    record = json.loads((tmp_path / "eval" / "record.json").read_text())
    assert set(record["scores"]) == {"stsb/spearman", "stsb/pearson"}
    assert "| stsb | spearman |" in capsys.readouterr().out


def test_evaluate_scores_a_beir_folder_by_its_name_and_records_what_it_tolerated(tiny_model_dir, tiny_data_dir,
                                                                                  tmp_path, capsys):
    folder = Path(shutil.copytree(tiny_data_dir / "retrieval/scifact", tmp_path / "my-beir"))
    qrels = folder / "qrels/test.tsv"
    qrels.write_text(qrels.read_text() + "q0\tnot-a-doc\t1.0\nq404\td1\t1\n")
    (folder / "qrels/dev.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    code = main(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--sts-tasks", "none",
                 "--retrieval-tasks", f"scifact,{folder}", "--output-dir", str(tmp_path / "eval")])
    assert code == 0
    record = json.loads((tmp_path / "eval" / "record.json").read_text())
    assert {"scifact/ndcg@10", "my-beir/ndcg@10"} <= set(record["scores"])
    # the dangling document still counts in q0's ideal ranking, so the folder's copy scores lower than scifact's
    assert record["scores"]["my-beir/ndcg@10"] < record["scores"]["scifact/ndcg@10"]
    assert record["data_checks"]["my-beir"] == {"judgements_without_document": 1, "judgements_without_query": 1,
                                                "identical_ids_ignored": 0, "empty_documents": 0}
    assert "| my-beir | ndcg@10 |" in capsys.readouterr().out
    code = main(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--sts-tasks", "none",
                 "--retrieval-tasks", str(folder), "--retrieval-split", "dev", "--output-dir", str(tmp_path / "dev")])
    assert code == 0
    assert json.loads((tmp_path / "dev" / "record.json").read_text())["data"]["my-beir"].endswith("(dev)")


@pytest.mark.parametrize("tasks, expected", [
    ("nope", "--retrieval-tasks: unknown task 'nope'; choose from scifact, stsb-retrieval, nfcorpus"),
    ("./no/such/folder", "--retrieval-tasks ./no/such/folder: not a folder in BEIR layout"),
])
def test_bad_retrieval_tasks(tiny_model_dir, tiny_data_dir, tmp_path, capsys, tasks, expected):
    code, err = run_cli(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir),
                         "--retrieval-tasks", tasks, "--output-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and expected in err and len(err.splitlines()) == 1


def test_offline_without_data_dir_fails_in_one_line_at_once(tmp_path):
    """No hub and no --data-dir: one line within seconds, before torch is even imported (the hub clients would
    retry each download for half a minute)."""
    import os
    import time

    from sbert_repro.data.hub import OFFLINE_VARIABLES

    env = {name: value for name, value in os.environ.items() if name not in OFFLINE_VARIABLES}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_DATASETS_CACHE=str(tmp_path / "hf-datasets"))
    probe = subprocess.run([sys.executable, "-c", "from sbert_repro.data.hub import hub_unreachable_reason as r; "
                            "print(r() or '')"], env=env, capture_output=True, text=True, timeout=60)
    if not probe.stdout.strip():
        pytest.skip("the Hugging Face hub is reachable from here")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(SCRIPT), "--output-dir", str(tmp_path / "out")], env=env,
                            capture_output=True, text=True, timeout=60)
    seconds = time.perf_counter() - start
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "from the Hugging Face hub (huggingface.co is not reachable" in result.stderr
    assert "--data-dir" in result.stderr
    assert seconds < 5, seconds


def test_mteb_offline_says_why_in_one_line(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    code, err = run_cli(["evaluate", "--mteb", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir),
                         "--output-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and "--mteb: mteb loads its task data from the Hugging Face hub" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_mteb_not_installed_says_how_to_get_it(tiny_model_dir, tiny_data_dir, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mteb" else real(name, *a))
    monkeypatch.setattr("sbert_repro.pipeline.evaluate_run.hub_unreachable_reason", lambda: None)  # as if online
    code, err = run_cli(["evaluate", "--mteb", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir),
                         "--output-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and "pip install 'sbert-repro[mteb]'" in err


def test_eval_length_past_the_model_positions(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    code, err = run_cli(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir),
                         "--eval-max-seq-length", "1000", "--output-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and "the model has only 64 positions" in err and not (tmp_path / "out").exists()


def test_script_help_describes_every_option():
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for option in ("--model", "--pooling", "--data-dir", "--output-dir", "--epochs", "--batch-size", "--lr",
                   "--warmup-ratio", "--seed", "--max-seq-length", "--sts-tasks", "--retrieval-tasks",
                   "--max-train-samples", "--device"):
        assert option in result.stdout, option


# ----------------------------------------------------------------------------- errors users see

def run_cli(args: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse rejects bad option values before main's own handling
        code = exit_.code
    err = capsys.readouterr().err.strip()
    return code, err


def finetune_args(model: Path, data_dir: Path | None, out: Path, *extra: str) -> list[str]:
    args = ["finetune", "--model", str(model), "--output-dir", str(out), "--epochs", "1", *extra]
    return args + (["--data-dir", str(data_dir)] if data_dir is not None else [])


@pytest.fixture
def broken_data(tiny_data_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny data for a test to break."""
    return Path(shutil.copytree(tiny_data_dir, tmp_path / "data"))


@pytest.mark.parametrize("extra, expected", [
    (["--sts-tasks", "stsb,sts99"], "--sts-tasks: unknown task 'sts99'; choose from sts12"),
    (["--retrieval-tasks", "msmarco"], "--retrieval-tasks: unknown task 'msmarco'"),
    (["--pooling", "median"], "--pooling: unknown mode 'median'; choose from mean, cls, max"),
    (["--device", "tpu"], "--device: unknown device 'tpu'; choose from auto, cpu, cuda, mps"),
    (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
    (["--batch-size", "-4"], "--batch-size must be a positive integer, got -4"),
    (["--lr", "0"], "--lr must be a positive number, got 0.0"),
    (["--warmup-ratio", "1.5"], "--warmup-ratio must be in [0, 1), got 1.5"),
    (["--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
    (["--seeds", "0"], "--seeds: a count must be a positive integer"),
    (["--seeds", "1,x"], "--seeds: '1,x' is neither a count nor"),
    (["--seeds", "1,1"], "--seeds must list distinct seeds"),
])
def test_bad_options(tiny_model_dir, tiny_data_dir, tmp_path, capsys, extra, expected):
    code, err = run_cli(finetune_args(tiny_model_dir, tiny_data_dir, tmp_path / "out", *extra), capsys)
    assert code == 2
    assert expected in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_data_file(tiny_model_dir, broken_data, tmp_path, capsys):
    (broken_data / "sts/sts14/test.jsonl").unlink()
    code, err = run_cli(finetune_args(tiny_model_dir, broken_data, tmp_path / "out"), capsys)
    assert code == 2 and "sts/sts14/test.jsonl: file not found" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("bad_row, expected", [
    ({"sentence1": "the cat", "score": 2}, "train.jsonl:97: missing field 'sentence2'"),
    ({"sentence1": "the cat", "sentence2": "a dog", "score": "n/a"}, "train.jsonl:97: field 'score' must be a finite"),
    ({"sentence1": "the cat", "sentence2": "a dog", "score": 7}, "train.jsonl:97: score 7 is outside stsb's range"),
    ({"sentence1": "", "sentence2": "a dog", "score": 2}, "train.jsonl:97: field 'sentence1' must be a non-empty"),
])
def test_malformed_training_row(tiny_model_dir, broken_data, tmp_path, capsys, bad_row, expected):
    path = broken_data / "sts/stsb/train.jsonl"
    path.write_text(path.read_text() + json.dumps(bad_row) + "\n")
    code, err = run_cli(finetune_args(tiny_model_dir, broken_data, tmp_path / "out"), capsys)
    assert code == 2 and expected in err and len(err.splitlines()) == 1


def test_qrels_with_a_fractional_grade(tiny_model_dir, broken_data, tmp_path, capsys):
    qrels = broken_data / "retrieval/scifact/qrels/test.tsv"
    qrels.write_text(qrels.read_text() + "q1\td1\t1.5\n")
    code, err = run_cli(finetune_args(tiny_model_dir, broken_data, tmp_path / "out"), capsys)
    assert code == 2 and "test.tsv:14: score '1.5' is not an integer relevance grade" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_hub_unreachable_without_data_dir(tiny_model_dir, tmp_path, capsys):
    code, err = run_cli(finetune_args(tiny_model_dir, None, tmp_path / "out", "--sts-tasks", "sts12"), capsys)
    assert code == 2 and "cannot load" in err and "from the Hugging Face hub" in err and "--data-dir" in err


def test_model_folder_without_weights(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    no_weights = Path(shutil.copytree(tiny_model_dir, tmp_path / "no-weights"))
    (no_weights / "model.safetensors").unlink()
    code, err = run_cli(finetune_args(no_weights, tiny_data_dir, tmp_path / "out"), capsys)
    assert code == 2 and "the folder has no weights" in err and len(err.splitlines()) == 1


def test_model_path_that_does_not_exist(tiny_data_dir, tmp_path, capsys):
    code, err = run_cli(finetune_args(tmp_path / "nowhere", tiny_data_dir, tmp_path / "out"), capsys)
    assert code == 2 and "nowhere: no such folder" in err


def test_existing_run_folder_is_never_overwritten(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "record.json").write_text('{"precious": true}')
    code, err = run_cli(finetune_args(tiny_model_dir, tiny_data_dir, out), capsys)
    assert code == 2 and "already exists and is not empty" in err
    assert (out / "record.json").read_text() == '{"precious": true}'


def test_errors_from_a_real_process_are_one_line_without_traceback(tiny_model_dir, tiny_data_dir, tmp_path):
    # an option argparse rejects, one our config rejects, and a data error found after the heavy imports
    for extra in (["--pooling", "nope"], ["--sts-tasks", "nope"], ["--data-dir", str(tmp_path / "no-data")]):
        result = subprocess.run([sys.executable, str(SCRIPT), "--model", str(tiny_model_dir), "--data-dir",
                                 str(tiny_data_dir), "--output-dir", str(tmp_path / "o"), *extra],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("finetune.py: error:")


@pytest.mark.parametrize("old, new", [("--batch-size", "--eval-batch-size"),
                                      ("--max-seq-length", "--eval-max-seq-length")])
def test_index_refuses_finetunes_training_spelling_and_names_its_own(old, new, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["index", "--corpus", "c.jsonl", "--output-dir", "idx", old, "8"])
    said = capsys.readouterr().err.strip()
    assert stopped.value.code == 2 and said == (f"sbert-repro index: error: {old}: encoding here is {new}, as in "
                                                f"evaluate ({old} is finetune's, for training); give {new} 8 "
                                                "(see --help)")


def test_each_command_builds_its_own_config_and_one_option_means_one_field():
    from sbert_repro.cli.main import config_from_args
    from sbert_repro.cli.options import build_parser

    def built(*argv: str):
        return config_from_args(build_parser().parse_args(list(argv)), list(argv))

    index = built("index", "--corpus", "c.jsonl", "--output-dir", "idx", "--eval-batch-size", "8",
                  "--eval-max-seq-length", "32")
    assert type(index) is IndexConfig and (index.eval_batch_size, index.eval_max_seq_length) == (8, 32)
    assert not hasattr(index, "objective") and not hasattr(index, "sts_tasks")
    train = built("finetune", "--batch-size", "8", "--output-dir", "run")
    assert type(train) is TrainConfig and train.batch_size == 8 and not hasattr(train, "index")
    retrieval = built("finetune", "--objective", "retrieval", "--output-dir", "run")
    assert (retrieval.batch_size, retrieval.epochs, retrieval.max_seq_length) == (64, 3, 256)  # its own defaults
    evaluate = built("evaluate", "--index", "HNSW32", "--ef-search", "64", "--output-dir", "run")
    assert type(evaluate) is EvaluateConfig and not hasattr(evaluate, "epochs") and evaluate.ef_search == 64


@pytest.mark.parametrize("config, values, message", [
    (EvaluateConfig, {"index": "Flat", "nprobe": 4}, "--nprobe: the index 'Flat' has no IVF lists"),
    (IndexConfig, {"processes": 0}, "--processes must be a positive integer, got 0"),
    (TrainConfig, {"precision": "int8"}, "--precision int8: int8 is for encoding only"),
    (TrainConfig, {"pooling": "median"}, "--pooling: unknown mode 'median'"),
])
def test_a_config_built_in_code_is_checked_as_the_command_line_is(config, values, message):
    with pytest.raises(UsageError, match=message):
        config(**values)


def test_progress_bars_are_off_with_quiet_or_off_a_terminal_and_every_command_takes_quiet(monkeypatch):
    from sbert_repro.cli.options import build_finetune_parser, build_parser
    from sbert_repro.runs import progress

    parser = build_parser()
    assert all(any(action.dest == "quiet" for action in sub._actions)
               for sub in parser._subparsers._group_actions[0].choices.values())
    assert parser.parse_args(["search", "--index-dir", "x", "--quiet", "q"]).quiet is True
    assert parser.parse_args(["compare", "a", "b", "--quiet"]).quiet is True
    assert build_finetune_parser("finetune.py").parse_args(["--quiet"]).quiet is True
    for variable in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        monkeypatch.delenv(variable, raising=False)
    progress.show_bars(True)
    assert progress.bars_shown() and "TQDM_DISABLE" not in os.environ
    progress.show_bars(False)
    assert not progress.bars_shown() and os.environ["TQDM_DISABLE"] == "1"  # read by tqdm as it is imported
    progress.show_bars(True)


def test_a_command_off_a_terminal_prints_no_progress_bar(tiny_model_dir, tiny_data_dir, tmp_path, capsys):
    """Not even a library's: transformers' weight loading, sentence-transformers' batches (stderr is captured here:
    no terminal)."""
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--sts-tasks", "stsb",
                 "--retrieval-tasks", "none", "--output-dir", str(tmp_path / "out"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "it/s" not in err, err


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--model", "/nonexistent/model"], "--model /nonexistent/model: no such folder"),
    (["evaluate", "--model", "m/x/y", "--data-dir", "/nonexistent"], "--data-dir /nonexistent: no such folder"),
    (["evaluate", "--model", "org/m", "--index", "IVF4096,Flut", "--data-dir", "DATA"],
     "--index 'IVF4096,Flut': faiss cannot build it (could not parse code description Flut"),
    (["evaluate", "--model", "org/m", "--data-dir", "DATA", "--retrieval-tasks", "nfcorpus"],
     "nfcorpus is not there (no retrieval/nfcorpus/); there: scifact"),
    (["finetune", "--model", "org/m", "--data-dir", "DATA", "--objective", "nli-softmax"],
     "allnli is not there (no nli/allnli/); there: snli (validation); choose one of those (--nli-task snli "
     "--nli-split validation, say)"),
    (["compare", "/nonexistent/a", "/nonexistent/b"], "RUN_A /nonexistent/a: no such folder"),
    (["index", "--model", "org/m", "--corpus", "/nonexistent.jsonl", "--output-dir", "OUT"],
     "--corpus /nonexistent.jsonl: no such file or folder"),
    (["search", "--index-dir", "/nonexistent", "q"], "--index-dir /nonexistent: no finished index there"),
    (["search", "--index-dir", "OUT", "--queries-file", "/nonexistent.txt"],
     "--queries-file /nonexistent.txt: no such file"),
    (["search", "--index-dir", "OUT", "--queries-file", "/nonexistent.txt", "q"],
     "queries on the command line and --queries-file /nonexistent.txt: give one of them"),
    (["bm25", "--data-dir", "/nonexistent"], "--data-dir /nonexistent: no such folder"),
])
def test_a_bad_path_or_option_fails_in_under_a_second_before_the_heavy_imports(argv, message, tiny_data_dir,
                                                                               tmp_path):
    """As a user runs it, in a process of its own: torch and sentence-transformers are never imported."""
    (tmp_path / "OUT").mkdir()
    argv = [str(tiny_data_dir) if arg == "DATA" else str(tmp_path / "OUT") if arg == "OUT" else arg for arg in argv]
    check = ("import sys, time; start = time.perf_counter(); from sbert_repro.cli.main import main; "
             "code = main(sys.argv[1:]); print(code, time.perf_counter() - start, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", check, *argv], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    code, seconds, torch_imported = result.stdout.split()
    assert code == "2" and message in result.stderr.strip().splitlines()[-1], result.stderr
    assert torch_imported == "False" and float(seconds) < 1.0


def test_each_commands_help_is_written_for_it(capsys):
    from sbert_repro.cli.options import build_parser

    helps = {}
    for command in ("evaluate", "finetune"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        helps[command] = " ".join(capsys.readouterr().out.split())
    assert "trains and encodes in bf16" not in helps["evaluate"] and "encodes in bf16" in helps["evaluate"]
    assert "--objective cross-encoder-retrieval" not in helps["evaluate"] and "the baseline only" not in \
        helps["evaluate"]
    assert "trains and encodes in bf16" in helps["finetune"] and "--objective cross-encoder-retrieval: none" in \
        helps["finetune"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    assert "fine-tune (--objective: one of" in " ".join(capsys.readouterr().out.split())


def test_a_negative_number_with_an_exponent_is_a_value_for_its_config_to_judge(tmp_path, capsys):
    assert main(["finetune", "--lr", "-1e-3", "--output-dir", str(tmp_path / "run")]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "expected one argument" not in line and "--lr" in line


def test_a_json_line_error_says_where_in_the_line(tmp_path):
    from sbert_repro.data.sources import read_jsonl
    from sbert_repro.errors import UsageError

    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"text": "unterminated}\n')
    with pytest.raises(UsageError, match="rows.jsonl:2: not valid JSON \\(Unterminated string starting at column "
                                         "10\\); fix or remove the line"):
        list(read_jsonl(path))
