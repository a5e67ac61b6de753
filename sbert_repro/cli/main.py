"""The `sbert-repro` command: `evaluate` (score a model), `finetune` (the reproduction), `index` (encode a
corpus into a FAISS index on disk), `search` (query it), `geometry` (measure the space of a model's vectors), `bm25`
(the lexical reference on the retrieval tasks) and `compare` (two runs' per-query scores, paired);
`finetune_script` is scripts/finetune.py, the same as `sbert-repro finetune`.

Bad input of any kind (options, files, rows, model paths, an unreachable hub) ends with one line on
stderr and exit status 2; nothing already written is touched. A Ctrl-C ends with one line too (where it
stopped, and for `finetune` and `index` the command that continues it) and exit status 130.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sbert_repro.cli.failures import exit_status
from sbert_repro.cli.logs import library_messages, show_on_terminal
from sbert_repro.cli.options import build_finetune_parser, build_parser
from sbert_repro.cli.preflight import check_hub_data, check_paths
from sbert_repro.config.checks import parse_dims
from sbert_repro.config.encoding import BM25Config, CompareConfig, EncoderConfig, EvaluateConfig, GeometryConfig
from sbert_repro.config.indexing import IndexConfig, SearchConfig
from sbert_repro.config.training import TrainConfig
from sbert_repro.data.tasks import STS_TASKS, parse_retrieval_tasks, parse_task_list
from sbert_repro.errors import UsageError
from sbert_repro.runs import progress

# ----------------------------------------------------------------------------- configs from options (options.py)

def default_output_dir(model: str, now: datetime | None = None) -> Path:
    """runs/<YYYYmmdd-HHMMSS-microseconds>-<last part of the model name or path>: microseconds, so that runs
    started in the same second (a loop of jobs) get folders of their own."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S-%f")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model.rstrip("/\\")).name or "model")
    return Path("runs") / f"{stamp}-{name}"


def parse_seeds(value: str | None, first_seed: int) -> tuple[int, ...]:
    """'5' -> five seeds from first_seed on; '1,7,9' -> those seeds; None -> (first_seed,)."""
    if value is None:
        return (first_seed,)
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--seeds: {value!r} is neither a count nor a comma-separated list of integers") from None
    if not numbers:
        raise UsageError(f"--seeds: {value!r} names no seed; give a count or a comma-separated list")
    if "," in value:
        return tuple(numbers)
    if numbers[0] <= 0:
        raise UsageError(f"--seeds: a count must be a positive integer, got {value!r}")
    return tuple(range(first_seed, first_seed + numbers[0]))


# Parsed options no config holds: which command, --quiet and --verbose (what the terminal shows is the command
# line's alone).
NOT_CONFIG = ("command", "quiet", "verbose")

# The config each command builds from its parsed options.
COMMAND_CONFIGS: dict[str, type[EncoderConfig]] = {"evaluate": EvaluateConfig, "finetune": TrainConfig,
                                                   "index": IndexConfig}


def config_from_args(args: argparse.Namespace, argv: list[str]) -> EncoderConfig:
    """The config of a parsed `evaluate`, `finetune` or `index` command line, checked (once) as it is built."""
    values = {key: value for key, value in vars(args).items() if key not in NOT_CONFIG}
    if args.command == "finetune":
        values["seeds"] = parse_seeds(values["seeds"], values["seed"])
        values["seed"] = values["seeds"][0]
    for key, option in (("matryoshka_dims", "--matryoshka-dims"), ("eval_dims", "--dims")):
        if key in values:
            values[key] = () if values[key] is None else parse_dims(values[key], option)
    if "sts_tasks" in values:  # left out: None, which TrainConfig resolves by objective; evaluate's own default
        given = values["sts_tasks"]
        values["sts_tasks"] = (parse_task_list(given, STS_TASKS, "--sts-tasks") if given is not None else
                               None if args.command == "finetune" else EvaluateConfig.sts_tasks)
        given = values["retrieval_tasks"]
        values["retrieval_tasks"] = (parse_retrieval_tasks(given) if given is not None else
                                     None if args.command == "finetune" else EvaluateConfig.retrieval_tasks)
    if values.get("resume") and values["output_dir"] is None:
        raise UsageError("--resume needs --output-dir: the folder of the run to continue")
    if values["output_dir"] is None:
        values["output_dir"] = default_output_dir(values["model"])
    return COMMAND_CONFIGS[args.command](**values, argv=tuple(argv))


def geometry_config_from_args(args: argparse.Namespace, argv: list[str]) -> GeometryConfig:
    """The GeometryConfig of a parsed `sbert-repro geometry` command line."""
    values = {key: tuple(value) if isinstance(value, list) else value
              for key, value in vars(args).items() if key not in NOT_CONFIG}
    values["sts_tasks"] = parse_task_list(values["sts_tasks"], STS_TASKS, "--sts-tasks")
    if values["output_dir"] is None:
        values["output_dir"] = default_output_dir("geometry")
    return GeometryConfig(**values, argv=tuple(argv))


def bm25_config_from_args(args: argparse.Namespace, argv: list[str]) -> BM25Config:
    """The BM25Config of a parsed `sbert-repro bm25` command line."""
    values = {key: value for key, value in vars(args).items() if key not in NOT_CONFIG}
    given = values["retrieval_tasks"]
    values["retrieval_tasks"] = parse_retrieval_tasks(given) if given is not None else BM25Config.retrieval_tasks
    if values["output_dir"] is None:
        values["output_dir"] = default_output_dir("bm25")
    return BM25Config(**values, argv=tuple(argv))


def search_config_from_args(args: argparse.Namespace) -> SearchConfig:
    """The SearchConfig of a parsed `sbert-repro search` command line."""
    return SearchConfig(**{key: tuple(value) if key == "queries" else value
                           for key, value in vars(args).items() if key not in NOT_CONFIG})


# ----------------------------------------------------------------------------- running a command

def _run(args: argparse.Namespace, argv: list[str], prog: str, command_line: str) -> int:
    # Our own progress at INFO; other libraries only when something is wrong (faiss alone logs 8 lines
    # at INFO on import), and then in the command's log file unless --verbose.
    show_on_terminal()
    config = None  # until it is built: what a failure or a Ctrl-C says to do next depends on it
    progress.stage("starting")
    progress.show_bars(not getattr(args, "quiet", False) and sys.stderr.isatty())

    def run_command() -> None:
        nonlocal config
        config = (search_config_from_args(args) if args.command == "search" else
                  geometry_config_from_args(args, argv) if args.command == "geometry" else
                  bm25_config_from_args(args, argv) if args.command == "bm25" else
                  CompareConfig(args.run_a, args.run_b, args.metric) if args.command == "compare" else
                  config_from_args(args, argv))
        check_paths(config)
        check_hub_data(config)
        with library_messages(args.command, getattr(args, "verbose", False)):
            _command(args.command)(config)

    # A disk that fills up (or is read-only) anywhere, saving a model or a checkpoint say, is one line too.
    return exit_status(prog, run_command,
                       remedy=lambda: _after_write_failure(args.command, config, argv, command_line),
                       interrupted=lambda: f"interrupted while {progress.current()}; "
                                           f"{_what_now(args.command, config, argv, command_line)}")


def _command(name: str) -> Callable[[Any], object]:
    """The pipeline function that runs command `name`, one pipeline module per command (bm25_run holds two)."""
    # Imported only now: torch and sentence-transformers take seconds to import, and --help or a bad
    # option should answer at once.
    from sbert_repro.pipeline.bm25_run import bm25, compare
    from sbert_repro.pipeline.evaluate_run import evaluate
    from sbert_repro.pipeline.finetune_run import finetune
    from sbert_repro.pipeline.geometry_run import measure_geometry
    from sbert_repro.pipeline.index_run import index_corpus
    from sbert_repro.pipeline.search_run import search_index

    return {"evaluate": evaluate, "finetune": finetune, "geometry": measure_geometry, "index": index_corpus,
            "search": search_index, "bm25": bm25, "compare": compare}[name]


def _after_write_failure(command: str, config: EncoderConfig | SearchConfig | None, argv: list[str],
                         command_line: str) -> str:
    """What to do once the disk has room again (or the folder is writable): continue, or run the command again."""
    what_now = _what_now(command, config, argv, command_line)
    if what_now.startswith("continue with"):
        return what_now
    unchanged = f" ({what_now.split(';')[0]})" if isinstance(config, EncoderConfig) and config.overwrite else ""
    return f"run the command again{unchanged}"


def _what_now(command: str, config: EncoderConfig | SearchConfig | None, argv: list[str], command_line: str) -> str:
    """What an interrupted command left, and how to go on from there."""
    if not isinstance(config, EncoderConfig):
        return "nothing was written"
    folder, thing = config.output_dir, "index" if command == "index" else "run"
    if config.overwrite:
        return f"the previous {thing} in {folder} is unchanged; run the command again to replace it"
    if command == "evaluate":
        return f"nothing was written to {folder} (a run folder is moved into place only when complete)"
    resumable = (folder / "encode-progress.json").is_file() if command == "index" else \
        (folder / "record.json").is_file() or any(folder.glob("seed-*/record.json"))
    if not resumable:
        return "nothing to continue; run the command again"
    again = [arg for arg in argv if arg != "--resume"]
    if not any(arg == "--output-dir" or arg.startswith("--output-dir=") for arg in again):
        again += ["--output-dir", str(folder)]  # the default folder, named by the clock: spell it out
    return f"continue with: {command_line} {shlex.join([*again, '--resume'])}"


def main(argv: list[str] | None = None) -> int:
    """`sbert-repro evaluate|finetune|index|search|geometry|bm25|compare ...`"""
    argv = list(sys.argv[1:] if argv is None else argv)
    return _run(build_parser("sbert-repro").parse_args(argv), argv, "sbert-repro", "sbert-repro")


def finetune_script(argv: list[str] | None = None, prog: str = "finetune.py") -> int:
    """`python scripts/finetune.py ...`"""
    argv = list(sys.argv[1:] if argv is None else argv)
    return _run(build_finetune_parser(prog).parse_args(argv), argv, prog, "python scripts/finetune.py")


if __name__ == "__main__":
    sys.exit(main())
