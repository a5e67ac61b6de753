"""The schema of record.json: one pydantic model per kind of record (a fine-tune seed, an evaluation, BM25, a geometry
run, each benchmark), as mteb's TaskResult types its results.

pydantic rather than dataclasses: it checks a record read back from JSON field by field and names the field that
fails (a dataclass would take a string for an int), and it writes the JSON Schema that docs/record.schema.json
publishes for other tools. Every field a record may lack (it was written before the option or the key existed)
declares the value such a run had, so an old record reads in today's shape, and `assumed` names what was filled in:
a page may say "not recorded" or "assumed" for it, never claim it.

A run's config is the command's own config class (config/) as JSON: its fields, types and defaults are derived from
that dataclass, so a new option is in the schema the moment it is declared.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError, create_model, model_validator

from sbert_repro.config.encoding import BM25Config, EvaluateConfig, GeometryConfig, json_value
from sbert_repro.config.training import TrainConfig
from sbert_repro.runs.record_parts import (
    AnnPoint,
    BenchmarkConfig,
    CostModel,
    Environment,
    GeometryModel,
    GoldPairs,
    MatmulPeaks,
    MatmulSettings,
    Part,
    PerfModel,
    Postprocess,
    RetrievalTraining,
    ScaleCorpus,
    ScalePoint,
    Scored,
    Sentences,
    Timings,
    TrainingStage,
    Vectors,
)

FINETUNE_KIND, EVALUATE_KIND, BM25_KIND, GEOMETRY_KIND = "finetune", "evaluate", "bm25", "geometry"
ANN_KIND, PERF_KIND, COST_KIND, SCALE_KIND = "ann-benchmark", "perf-benchmark", "cost-benchmark", "scale-benchmark"
# Runs recorded before --precision and --group-by-length existed ran in fp32, with random batches.
BEFORE_SPEED_OPTIONS = {"precision": "fp32", "group_by_length": False}


# ----------------------------------------------------------------------------- a run's config, from config/

def _json_type(hint: Any) -> Any:
    """The JSON form of a config field's type: a Path is a string, a tuple a list."""
    origin = typing.get_origin(hint)
    if hint is Path:
        return str
    if origin is tuple:
        return list[_json_type(typing.get_args(hint)[0])]
    if origin in (Union, types.UnionType):
        return Union[tuple(_json_type(arg) for arg in typing.get_args(hint))]  # noqa: UP007 (built at run time)
    return hint


def _config_model(config_class: type, name: str, fallbacks: dict[str, Any] | None = None) -> type[Part]:
    """A Part with `config_class`'s recorded fields, each defaulting to what a run recorded before the field existed
    ran with: `fallbacks`' value (the resolved config's), else the dataclass's own default."""
    hints = typing.get_type_hints(config_class)
    fields = {}
    for field in dataclasses.fields(config_class):
        if field.name in NOT_RECORDED:
            continue
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        default = (fallbacks or {}).get(field.name, default)
        fields[field.name] = (_json_type(hints[field.name]), json_value(default))
    return create_model(name, __base__=Part, __doc__=f"{config_class.__name__}, as a record holds it.", **fields)


# What a config knows of how it was built, not what the run did: to_dict leaves them out of the record.
NOT_RECORDED = ("defaulted", "pooling_defaulted")


TrainConfigRecord = _config_model(TrainConfig, "TrainConfigRecord", {**TrainConfig().to_dict(), **BEFORE_SPEED_OPTIONS})
EvaluateConfigRecord = _config_model(EvaluateConfig, "EvaluateConfigRecord",
                                     {**EvaluateConfig().to_dict(), **BEFORE_SPEED_OPTIONS})
BM25ConfigRecord = _config_model(BM25Config, "BM25ConfigRecord")
GeometryConfigRecord = _config_model(GeometryConfig, "GeometryConfigRecord")


# ----------------------------------------------------------------------------- what every record shares

class Record(Part):
    """What every record holds: its kind, whether the run finished, and what it was made with."""

    status: Literal["complete", "incomplete"] = "complete"  # records written before runs could be resumed finished
    environment: Environment
    _path: str = PrivateAttr(default="")

    @property
    def path(self) -> str:
        """Where the record lies under the records folder ('table2-minilm-4ep-part1/seed-42'), once read from one."""
        return self._path

    def at(self, path: str) -> Record:
        self._path = path
        return self


# ----------------------------------------------------------------------------- fine-tune, evaluate, bm25

FINISHED_RUN_HOLDS = ("finetuned", "training", "timings")  # what a fine-tune's record holds once it finished


SHA256 = "^[0-9a-f]{64}$"


class Fingerprints(Part):
    """sha256 of what a run's results are made from (a fine-tune's --resume compares them): the raw model (weights
    and tokenizer; its modules' configs and weights) and each set as loaded, under the name `data` gives it."""

    model_sha256: str = Field(pattern=SHA256)
    modules_sha256: str = Field(pattern=SHA256)
    model_prompts: dict[str, str] = {}  # the prompts the model brings (not --query-prompt: the config's)
    model_max_seq_length: int | None = None  # the raw model's max_seq_length as the run built it
    data_sha256: dict[str, Annotated[str, Field(pattern=SHA256)]] = {}


class FinetuneRecord(Record):
    """One seed of `finetune`: the raw model scored, trained, and scored again."""

    # The rule across fields below, for JSON Schema readers too (a record without a status finished).
    model_config = ConfigDict(json_schema_extra={
        "if": {"properties": {"status": {"const": "complete"}}},
        "then": {"required": [*FINISHED_RUN_HOLDS], "properties": {name: {"not": {"type": "null"}}
                                                                  for name in FINISHED_RUN_HOLDS}}})

    kind: Literal["finetune"]
    config: TrainConfigRecord
    eval_max_seq_length: int | None = None
    modules: list[str] | None = None  # None: recorded before the model's modules were
    fingerprints: Fingerprints | None = None  # None: recorded before they were
    data: dict[str, str] = {}
    data_checks: dict[str, dict[str, int]] = {}
    baseline: Scored
    finetuned: Scored | None = None  # None until the run finished
    finetuned_is: str | None = None
    retrieval_training: RetrievalTraining | None = None
    training_stages: list[TrainingStage] = []
    training: TrainingStage | None = None
    timings: Timings | None = None  # None until the run finished

    @model_validator(mode="after")
    def _finished_runs_hold_their_results(self) -> FinetuneRecord:
        if self.status == "complete":
            for name in FINISHED_RUN_HOLDS:
                if getattr(self, name) is None:
                    raise ValueError(f"a finished fine-tune's record holds its {name!r}; this one does not")
        return self


class EvaluateRecord(Scored, Record):
    """`evaluate`: one model scored, no training."""

    kind: Literal["evaluate"]
    config: EvaluateConfigRecord
    eval_max_seq_length: int | None = None
    modules: list[str] | None = None
    fingerprints: Fingerprints | None = None  # None: recorded before they were
    data: dict[str, str] = {}
    data_checks: dict[str, dict[str, int]] = {}
    postprocess: Postprocess | None = None
    wall_seconds: float | None = None


class BM25Record(Scored, Record):
    """`bm25`: the lexical reference on the retrieval tasks."""

    kind: Literal["bm25"]
    config: BM25ConfigRecord
    data: dict[str, str] = {}
    data_checks: dict[str, dict[str, int]] = {}
    wall_seconds: float | None = None


# ----------------------------------------------------------------------------- geometry

class GeometryRecord(Record):
    kind: Literal["geometry"]
    config: GeometryConfigRecord
    data: dict[str, str] = {}
    sentences: Sentences
    gold_pairs: GoldPairs
    models: list[GeometryModel]
    wall_seconds: float | None = None


# ----------------------------------------------------------------------------- benchmarks (benchmarks/*.py)

class AnnConfig(BenchmarkConfig):
    vectors: int
    queries: int
    train_size: int
    clusters: int = 1  # benchmarks run before the mixture existed drew their vectors from one Gaussian


class AnnRecord(Record):
    kind: Literal["ann-benchmark"]
    config: AnnConfig
    vectors: Vectors
    large: list[AnnPoint]
    scifact: list[AnnPoint] = []
    wall_seconds: float | None = None


class PerfConfig(BenchmarkConfig):
    bert_shape: str | None = None
    encode_batch_size: int
    device: str = "cpu"  # benchmarks run before --device existed ran on the CPU
    epochs: int = 1
    tf32: bool = False
    compile: bool = False


class PerfRecord(Record):
    kind: Literal["perf-benchmark"]
    config: PerfConfig
    torch_threads: int
    matmul_settings: MatmulSettings | None = None  # None: recorded before the settings were (CPU runs, fp32)
    matmul_gflops: MatmulPeaks
    models: list[PerfModel]
    wall_seconds: float | None = None


class CostConfig(BenchmarkConfig):
    cross_encoder: str | None  # None: no trained one given; a new, random head on --model was timed
    sizes: list[int]
    target: int


class CostRecord(Record):
    kind: Literal["cost-benchmark"]
    config: CostConfig
    torch_threads: int
    faiss_threads: int | None = None
    models: list[CostModel]
    wall_seconds: float | None = None


class ScaleConfig(BenchmarkConfig):
    sizes: list[int]
    queries: int
    batch_size: int


class ScaleRecord(Record):
    kind: Literal["scale-benchmark"]
    config: ScaleConfig
    corpus: ScaleCorpus
    points: list[ScalePoint]
    wall_seconds: float | None = None


AnyRecord = Annotated[Union[FinetuneRecord, EvaluateRecord, BM25Record, GeometryRecord, AnnRecord,  # noqa: UP007
                            PerfRecord, CostRecord, ScaleRecord], Field(discriminator="kind")]
_ANY_RECORD = TypeAdapter(AnyRecord)
KINDS = tuple(typing.get_args(model.model_fields["kind"].annotation)[0] for model in
              typing.get_args(typing.get_args(AnyRecord)[0]))


class RecordError(ValueError):
    """A record that does not fit its schema: `field` names the first field that fails ("" for a rule across fields),
    `problem` what is wrong."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field, self.problem = field, problem


def typed(record: dict[str, Any]) -> AnyRecord:
    """The record (as json.loads gave it) as its kind's model; RecordError naming the first field that fails."""
    kind = record.get("kind")
    if kind not in KINDS:
        raise RecordError("kind", f"{'missing' if kind is None else f'{kind!r} is not a kind of record'}; one of "
                                  f"{', '.join(KINDS)}")
    try:
        return _ANY_RECORD.validate_python(record)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:])  # [0] is the kind the union chose
        return _raise(where, first["msg"][0].lower() + first["msg"][1:], first)


def _raise(field: str, message: str, detail: dict[str, Any]) -> typing.NoReturn:
    if detail["type"] == "missing":
        raise RecordError(field, "missing")
    if detail["type"] == "value_error":  # a rule across fields (a finished run's results): its own words
        raise RecordError(field, str(detail["ctx"]["error"]))
    raise RecordError(field, f"{message} (it holds {json.dumps(detail.get('input'))[:60]})")


def as_json(record: Record) -> dict[str, Any]:
    """The record as record.json holds it: only what the run set (never a filled-in default), by its JSON names."""
    return record.model_dump(mode="json", by_alias=True, exclude_unset=True)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of record.json, as docs/record.schema.json publishes it."""
    schema = _ANY_RECORD.json_schema(mode="validation", by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "sbert-repro record.json",
            "description": (__doc__ or "").split("\n\n")[0].replace("\n", " "), **schema}


SCHEMA_FILE = "docs/record.schema.json"

if __name__ == "__main__":  # python -m sbert_repro.runs.schema > docs/record.schema.json
    print(json.dumps(json_schema(), indent=2))
