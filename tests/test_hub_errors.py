"""The hub as a first real run meets it, against a local HTTP server standing in for HF_ENDPOINT: any HTTP answer
means the hub is there (only no connection, no DNS or no answer in time means offline); its errors are reported with
their status and what to do, and "offline" only where offline mode is in force. Also the pinned revisions (a commit
read other than the pin is one warning line and a record field) and `--mteb` failing without taking the run's own
scores with it."""

from __future__ import annotations

import http.server
import importlib.machinery
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import REPO_ROOT

from sbert_repro.config.encoding import EvaluateConfig
from sbert_repro.data import hub, sources, tasks
from sbert_repro.data import loaders as data
from sbert_repro.errors import UsageError
from sbert_repro.evaluation import scoring
from sbert_repro.pipeline.evaluate_run import evaluate

SCRIPT = REPO_ROOT / "scripts" / "finetune.py"


class _Hub(http.server.BaseHTTPRequestHandler):
    """Answers every request with the status the server was given, or the one a path names (`.../ds429/...`)."""

    def _answer(self) -> None:
        named = re.search(r"/ds(\d{3})\b", self.path)
        status = int(named.group(1)) if named else self.server.status  # type: ignore[attr-defined]
        body = json.dumps({"error": f"status {status}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = _answer

    def log_message(self, *args: object) -> None:  # quiet
        pass


@contextmanager
def local_hub(status: int = 404, seconds: float = 90, requests: int = 300) -> Iterator[str]:
    """An HTTP server on a free port of 127.0.0.1 answering `status` (or a path's), in a thread of its own that
    stops by itself after `seconds` or `requests`, whichever comes first; yields its address."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    server.status = status  # type: ignore[attr-defined]
    server.timeout = 0.2
    deadline = time.monotonic() + seconds
    stop = threading.Event()

    def serve() -> None:
        for _ in range(requests):  # each: one request (one connection: HTTP/1.0), or server.timeout without one
            if stop.is_set() or time.monotonic() > deadline:
                return
            server.handle_request()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        stop.set()
        thread.join(timeout=5)
        server.server_close()


def online_env(endpoint: str, tmp_path: Path) -> dict[str, str]:
    """The environment of a process that may go to the hub at `endpoint`, with a cache of its own."""
    env = {name: value for name, value in os.environ.items() if name not in hub.OFFLINE_VARIABLES + ("HF_TOKEN",)}
    return {**env, "HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf"),
            "HF_DATASETS_CACHE": str(tmp_path / "hf-datasets")}


@pytest.fixture
def online(monkeypatch):
    """This process as if the hub might be there (conftest keeps the tests offline)."""
    for name in hub.OFFLINE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# ----------------------------------------------------------------------------- the probe

@pytest.mark.parametrize("status", [401, 404, 405, 429, 500])
def test_any_http_answer_means_the_hub_is_there(online, monkeypatch, status):
    with local_hub(status) as endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        assert hub.hub_unreachable_reason() is None
        assert hub.stay_offline_if_hub_unreachable() is None
        assert not hub.hub_offline()  # the libraries are left to ask the hub, and report what it says


def test_no_connection_still_means_offline(online, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    start = time.perf_counter()
    reason = hub.stay_offline_if_hub_unreachable()
    assert reason == f"127.0.0.1:{port} is not reachable (ConnectionRefusedError)"
    assert hub.hub_offline() and time.perf_counter() - start < 5  # `online` puts conftest's offline mode back


# ----------------------------------------------------------------------------- the hub's answers

DRIVER = """
import sys, time
time.sleep = lambda seconds: None  # the hub client's back-off between its retries of a 429 or 500: not under test
from sbert_repro.data.sources import load_split
from sbert_repro.errors import UsageError
for dataset_id in sys.argv[1:]:
    try:
        load_split(dataset_id, None, "test", None)
    except UsageError as error:
        print(error)
"""


def test_hub_errors_name_the_status_and_what_to_do_and_never_say_offline(tmp_path):
    with local_hub() as endpoint:
        result = subprocess.run([sys.executable, "-c", DRIVER, "org/ds401", "org/ds404", "org/ds429", "org/ds500"],
                                env=online_env(endpoint, tmp_path), capture_output=True, text=True, timeout=120)
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4, result.stdout + result.stderr
    answered401, answered404, answered429, answered500 = lines
    assert answered401.startswith("cannot load org/ds401 from the Hugging Face hub: the hub answered 401 (")
    assert "401 Unauthorized" in answered401 and "hf auth login" in answered401 and "HF_TOKEN" in answered401
    assert "the hub answered 404" in answered404 and "HF_ENDPOINT" in answered404
    assert "the hub answered 429" in answered429 and "try again later" in answered429
    assert "the hub answered 500" in answered500 and "try again later" in answered500
    assert not any("offline" in line for line in lines)


def test_a_model_the_hub_refuses_names_the_status(monkeypatch):
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import httpx

    from sbert_repro.model import encoder

    request = httpx.Request("GET", "https://hub.example/org/private/resolve/main/config.json")
    answer = HfHubHTTPError("Client error '401 Unauthorized' for url 'https://hub.example/org/private'",
                            response=httpx.Response(401, request=request))

    def refused(*args, **kwargs):
        try:
            raise answer
        except HfHubHTTPError as error:  # as transformers re-raises it
            raise OSError("org/private is not a local folder and is not a valid model identifier") from error

    monkeypatch.setattr(encoder, "Transformer", refused)
    with pytest.raises(UsageError) as raised:
        encoder.build_model("org/private", "mean", "cpu")
    assert str(raised.value).startswith("--model org/private: cannot load it from the Hugging Face hub: the hub "
                                        "answered 401 (Client error '401 Unauthorized'")
    assert "HF_TOKEN" in str(raised.value) and "offline" not in str(raised.value)


def test_only_offline_mode_is_called_offline(tmp_path, monkeypatch):
    # conftest's offline mode is in force here: the run's message says so, and what to do
    with pytest.raises(UsageError, match=r"org/never-cached from the Hugging Face hub: offline, and not in the local "
                                         r"cache; pass --data-dir"):
        sources.load_split("org/never-cached", None, "test", None)
    # a failure that is no answer, with offline mode not in force, is named as the library names it
    error = ConnectionError("Couldn't reach 'org/x' on the Hub (ConnectError)")
    monkeypatch.setattr(sources, "hub_offline", lambda: False)
    assert sources.hub_failure(error) == ("no answer from the hub (ConnectionError: Couldn't reach 'org/x' on the Hub "
                                          "(ConnectError)); try again, or pass --data-dir DIR with local copies laid "
                                          "out as ../shared/data")


def test_a_connection_lost_after_a_tolerated_answer_is_no_answer():
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import httpx

    request = httpx.Request("HEAD", "https://hub.example/datasets/org/x/resolve/main/README.md")
    try:
        try:  # datasets asks for the card, is told 404, and goes on without one
            raise HfHubHTTPError("Client error '404 Not Found'", response=httpx.Response(404, request=request))
        except HfHubHTTPError:
            raise ConnectionError("Couldn't reach 'org/x' on the Hub (ConnectError)") from None
    except ConnectionError as error:
        lost = error
    assert hub.hub_error_reason(lost) is None
    assert hub.hub_error_reason(lost.__context__).startswith("the hub answered 404")


def test_the_default_run_against_a_hub_answering_401_names_the_401_in_one_line(tmp_path):
    with local_hub(401) as endpoint:
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(SCRIPT), "--output-dir", str(tmp_path / "out")],
                                env=online_env(endpoint, tmp_path), capture_output=True, text=True, timeout=120)
        seconds = time.perf_counter() - start
    error = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(error) == 1, result.stderr
    assert "the hub answered 401" in error[0] and "HF_TOKEN" in error[0] and "offline" not in error[0]
    assert not (tmp_path / "out").exists() and seconds < 60


# ----------------------------------------------------------------------------- revisions

def test_every_hub_dataset_of_the_registry_is_pinned():
    unpinned = {task.hub_id for task in [*tasks.STS_TASKS.values(), *tasks.RETRIEVAL_TASKS.values(),
                                         *tasks.NLI_TASKS.values()] if task.hub_id and not task.hub_revision}
    assert unpinned == set()
    pins = hub.pinned_revisions()
    assert pins["mteb/sts12-sts"] == tasks.STS_TASKS["sts12"].hub_revision
    # the commits sentence-transformers' examples and generated model cards name
    assert pins["sentence-transformers/stsb"] == "ab7a5ac0e35aa22088bdcf23e7fd99b220e53308"
    assert pins["sentence-transformers/all-nli"] == "d482672c8e74ce18da116f430137434ba2e52fab"
    assert pins["stanfordnlp/snli"] == "cdb5c3d5eed6ead6e5a341c8e56e669bb666725b"


class CachedSplit(list):
    """A loaded split as `datasets` caches a hub one: under .../<config>/<version>/<commit>/."""

    def __init__(self, rows: list[dict], commit: str) -> None:
        super().__init__(rows)
        self.cache_files = [{"filename": f"/cache/mteb___sts12-sts/default/0.0.0/{commit}/sts12-test.arrow"}]


# Scores within 0..1: in range for sts12 (0..5) and for sentence-transformers/stsb (gold / 5) alike.
STS_ROWS = [{"sentence1": "the cat is here", "sentence2": "the dog is here", "score": 0.4},
            {"sentence1": "we like the bus", "sentence2": "we like the bus", "score": 1.0},
            {"sentence1": "look at that rain", "sentence2": "a pizza was seen today", "score": 0.0}]


def test_a_commit_other_than_the_pin_is_one_warning_and_a_record_field(tiny_model_dir, tmp_path, monkeypatch,
                                                                       caplog):
    read = "f" * 40
    monkeypatch.setattr(sources, "load_split", lambda *args: CachedSplit(STS_ROWS, read))
    with caplog.at_level(logging.WARNING, logger="sbert_repro"):
        pairs = data.load_sts("sts12", "test", None)
        data.load_sts("sts12", "test", None)  # read twice, warned once
    pinned = tasks.STS_TASKS["sts12"].hub_revision
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"mteb/sts12-sts: read at commit {read[:12]}, not at the pinned {pinned[:12]} (offline, "
                        "`datasets` reads its newest cached copy); the record names both under revision_mismatches"]
    assert pairs.source == f"hf:mteb/sts12-sts@{read}:test"
    record = evaluate(EvaluateConfig(model=str(tiny_model_dir), sts_tasks=("sts12",), retrieval_tasks=(),
                                     device="cpu", output_dir=tmp_path / "out"))
    assert record["revision_mismatches"] == {"mteb/sts12-sts": {"pinned": pinned, "read": read}}
    assert json.loads((tmp_path / "out/record.json").read_text())["revision_mismatches"] == \
        record["revision_mismatches"]


def test_the_pinned_commit_is_no_mismatch(monkeypatch, caplog):
    pinned = tasks.STS_TASKS["sts12"].hub_revision
    monkeypatch.setattr(sources, "load_split", lambda *args: CachedSplit(STS_ROWS, pinned))
    with caplog.at_level(logging.WARNING, logger="sbert_repro"):
        source = data.load_sts("sts12", "test", None).source
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    assert hub.revision_mismatches({"sts12": source, "local": "/data/sts/sts12/test.jsonl"}) == {}


# ----------------------------------------------------------------------------- --mteb

class FakeMteb:
    """mteb's entry points as score_with_mteb calls them; `evaluate` fails as mteb does when its own hub call does."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error, self.names = error, []

    def get_tasks(self, tasks):
        return tasks

    def evaluate(self, model, tasks, cache, overwrite_strategy):
        self.names.append(model.model_card_data.model_name)  # what mteb names the model, and its results folder
        if self.error is not None:
            raise self.error
        return SimpleNamespace(task_results=[SimpleNamespace(task_name=name, get_score=lambda: 0.5)
                                             for name in tasks])


@pytest.fixture
def fake_mteb(monkeypatch):
    """mteb's module as score_with_mteb imports it (the package need not be installed), as if the hub were there."""
    def install(error: Exception | None = None) -> FakeMteb:
        fake = FakeMteb(error)
        module = types.ModuleType("mteb")
        module.__spec__ = importlib.machinery.ModuleSpec("mteb", None)  # what evaluate's find_spec("mteb") reads
        module.get_tasks, module.evaluate = fake.get_tasks, fake.evaluate
        cache = types.ModuleType("mteb.cache")
        cache.ResultCache = lambda folder: folder
        monkeypatch.setitem(sys.modules, "mteb", module)
        monkeypatch.setitem(sys.modules, "mteb.cache", cache)
        monkeypatch.setattr("sbert_repro.pipeline.evaluate_run.hub_unreachable_reason", lambda: None)
        return fake

    return install


def test_mteb_failing_keeps_the_runs_own_scores_and_records_the_error(fake_mteb, tiny_model_dir, tiny_data_dir,
                                                                      tmp_path):
    fake = fake_mteb(ConnectionError("Couldn't reach 'mteb/sts12-sts' on the Hub (LocalEntryNotFoundError)"))
    config = EvaluateConfig(model=str(tiny_model_dir), data_dir=tiny_data_dir, sts_tasks=("sts12", "stsb"),
                            retrieval_tasks=(), device="cpu", mteb=True, output_dir=tmp_path / "out")
    record = evaluate(config)
    assert record["mteb_error"] == "ConnectionError: Couldn't reach 'mteb/sts12-sts' on the Hub " \
                                   "(LocalEntryNotFoundError)"
    assert {"sts12/spearman", "stsb/spearman"} <= set(record["scores"])
    assert not any(key.endswith("mteb_main_score") for key in record["scores"])
    written = json.loads((tmp_path / "out/record.json").read_text())
    assert written["mteb_error"] == record["mteb_error"] and written["scores"] == record["scores"]
    assert fake.names == [f"sbert-repro/{tiny_model_dir.name}"]  # not mteb's no_model_name/available


def test_mteb_scores_beside_ours_under_the_models_name(fake_mteb, tiny_model_dir, tiny_data_dir, tmp_path):
    fake = fake_mteb()
    record = evaluate(EvaluateConfig(model=str(tiny_model_dir), data_dir=tiny_data_dir, sts_tasks=("sts12",),
                                     retrieval_tasks=(), device="cpu", mteb=True, output_dir=tmp_path / "out"))
    assert record["scores"]["sts12/mteb_main_score"] == 50.0 and "mteb_error" not in record
    assert fake.names == [f"sbert-repro/{tiny_model_dir.name}"]
    assert scoring.mteb_model_name("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    assert scoring.mteb_model_name("bert-base-uncased") == "sbert-repro/bert-base-uncased"


def test_with_the_real_mteb_a_local_model_is_named_for_its_results_folder(tiny_model_dir):
    pytest.importorskip("mteb")
    from mteb.models.model_meta import ModelMeta

    from sbert_repro.model.encoder import build_model

    model = build_model(str(tiny_model_dir), "mean", "cpu")
    model.model_card_data.model_name = scoring.mteb_model_name(str(tiny_model_dir))
    meta = ModelMeta.from_sentence_transformer_model(model)
    assert meta.model_name_as_path() == f"sbert-repro__{tiny_model_dir.name}"
