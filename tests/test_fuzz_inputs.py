"""Property tests: whatever bytes an input file holds (random bytes, random JSON, a good file cut short), the CLI
answers with exit status 0 or 2, an error is one line on stderr and never a traceback, and what was written
before is unchanged."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import make_tiny_data, write_jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sbert_repro.cli.main import main

FUZZ = settings(max_examples=6, deadline=None, derandomize=True,  # the same examples every run: no flaky CI
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=8)


def contents_strategy(good: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, lines of random JSON, or the good file cut anywhere."""
    return st.one_of(
        st.binary(max_size=300),
        st.lists(json_values, max_size=5).map(lambda rows: "".join(json.dumps(row) + "\n" for row in rows).encode()),
        st.integers(0, len(good)).map(lambda cut: good[:cut]),
    )


def contents(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


EXITS: list[int] = []  # every exit status seen, so that a test can tell its examples ran


def assert_clean_exit(code: int, err: str) -> None:
    EXITS.append(code)
    assert code in (0, 2) and "Traceback" not in err, err
    if code == 2:
        assert len([line for line in err.splitlines() if "error:" in line]) == 1, err


@contextmanager
def replaced(good: Path, name: str, data: bytes) -> Iterator[Path]:
    """A scratch copy of the folder `good` whose file `name` holds `data`."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(shutil.copytree(good, Path(scratch) / good.name))
        (folder / name).write_bytes(data)
        yield folder


def run_examples(check: Callable[[], None]) -> None:
    """Run a @given check and make sure it tried examples (not one, and not none)."""
    EXITS.clear()
    check()
    assert len(EXITS) >= 3, EXITS


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rows = [{"_id": f"doc-{word}", "text": f"we like the {word}"} for word in ("cat", "dog", "rain", "car", "bus")]
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", rows)


@pytest.fixture(scope="module")
def built(tiny_model_dir, corpus, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("indexes") / "idx"
    assert main(["index", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--output-dir", str(folder),
                 "--device", "cpu", "--precision", "fp32"]) == 0
    return folder


def index_command(model: Path, corpus: Path, out: Path) -> list[str]:
    return ["index", "--model", str(model), "--corpus", str(corpus), "--output-dir", str(out), "--device", "cpu",
            "--precision", "fp32", "--overwrite"]


def test_any_corpus_file(tiny_model_dir, corpus, built, capsys):
    @FUZZ
    @given(data=contents_strategy(corpus.read_bytes()))
    def check(data: bytes) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(shutil.copytree(built, Path(scratch) / "idx"))
            before = contents(folder)
            (Path(scratch) / "corpus.jsonl").write_bytes(data)
            capsys.readouterr()
            code = main(index_command(tiny_model_dir, Path(scratch) / "corpus.jsonl", folder))
            assert_clean_exit(code, capsys.readouterr().err)
            if code == 2:  # --overwrite replaces only on success
                assert contents(folder) == before
                assert sorted(p.name for p in Path(scratch).iterdir()) == ["corpus.jsonl", "idx"]

    run_examples(check)


@pytest.mark.parametrize("name", ["index.json", "embeddings.f32", "documents.jsonl", "offsets.npy"])
def test_any_index_folder_file(built, capsys, name):
    @FUZZ
    @given(data=contents_strategy((built / name).read_bytes()))
    def check(data: bytes) -> None:
        with replaced(built, name, data) as folder:
            before = contents(folder)
            capsys.readouterr()
            code = main(["search", "--index-dir", str(folder), "--device", "cpu", "--top-k", "5", "the cat"])
            assert_clean_exit(code, capsys.readouterr().err)
            assert contents(folder) == before

    run_examples(check)


def test_any_queries_file(built, capsys):
    @FUZZ
    @given(data=contents_strategy(b"the cat\nthe rain\n"))
    def check(data: bytes) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            queries = Path(scratch) / "queries.txt"
            queries.write_bytes(data)
            capsys.readouterr()
            code = main(["search", "--index-dir", str(built), "--device", "cpu", "--queries-file", str(queries)])
            assert_clean_exit(code, capsys.readouterr().err)

    run_examples(check)


# Each kind of evaluation input, and the tasks that read it (STS for the STS files, scifact for retrieval's).
DATA_FILES: dict[str, tuple[str, str]] = {
    "sts/stsb/test.jsonl": ("stsb", "none"),
    "retrieval/scifact/corpus.jsonl": ("none", "scifact"),
    "retrieval/scifact/queries.jsonl": ("none", "scifact"),
    "retrieval/scifact/qrels/test.tsv": ("none", "scifact"),
}


@pytest.mark.parametrize("name", sorted(DATA_FILES))
def test_any_evaluation_data_file(tiny_model_dir, tmp_path_factory, capsys, name):
    good = make_tiny_data(tmp_path_factory.mktemp("data"))
    sts, retrieval = DATA_FILES[name]
    evaluate: Callable[[Path, Path], list[str]] = lambda data, out: [  # noqa: E731
        "evaluate", "--model", str(tiny_model_dir), "--data-dir", str(data), "--output-dir", str(out),
        "--sts-tasks", sts, "--retrieval-tasks", retrieval, "--device", "cpu", "--overwrite"]

    good_run = tmp_path_factory.mktemp("runs") / "run"
    assert main(evaluate(good, good_run)) == 0
    before = contents(good_run)

    @FUZZ
    @given(data=contents_strategy((good / name).read_bytes()))
    def check(data: bytes) -> None:
        with replaced(good, name, data) as data_dir:
            run = Path(shutil.copytree(good_run, data_dir.parent / "run"))
            capsys.readouterr()
            code = main(evaluate(data_dir, run))
            assert_clean_exit(code, capsys.readouterr().err)
            if code == 2:
                assert contents(run) == before

    run_examples(check)


def test_any_nli_file(tiny_model_dir, tmp_path_factory, capsys):
    good = make_tiny_data(tmp_path_factory.mktemp("data"))
    name = "nli/snli/validation.jsonl"

    @FUZZ
    @given(data=contents_strategy((good / name).read_bytes()))
    def check(data: bytes) -> None:
        with replaced(good, name, data) as data_dir:
            capsys.readouterr()
            code = main(["finetune", "--model", str(tiny_model_dir), "--data-dir", str(data_dir), "--output-dir",
                         str(data_dir.parent / "run"), "--objective", "nli-softmax", "--nli-split", "validation",
                         "--nli-epochs", "1", "--max-train-samples", "8", "--epochs", "1", "--batch-size", "8",
                         "--sts-tasks", "stsb", "--retrieval-tasks", "none", "--device", "cpu"])
            assert_clean_exit(code, capsys.readouterr().err)

    run_examples(check)
