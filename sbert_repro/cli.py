"""The `sbert-repro` command: `evaluate` (score a model), `finetune` (the reproduction), `index` (encode a
corpus into a FAISS index on disk) and `search` (query it);
`finetune_script` is scripts/finetune.py, the same as `sbert-repro finetune`.

Bad input of any kind (options, files, rows, model paths, an unreachable hub) ends with one line on
stderr and exit status 2; nothing already written is touched. A Ctrl-C ends with one line too (where it
stopped, and for `finetune` and `index` the command that continues it) and exit status 130.
"""

from __future__ import annotations

import argparse
import errno
import logging
import shlex
import sys
from pathlib import Path

from sbert_repro import progress
from sbert_repro.config import (
    OBJECTIVE_STAGES,
    RunConfig,
    SearchConfig,
    build_finetune_parser,
    build_parser,
    config_from_args,
    search_config_from_args,
)
from sbert_repro.errors import UsageError
from sbert_repro.folders import write_failed
from sbert_repro.sources import hub_datasets, stay_offline_if_hub_unreachable, uncached_hub_datasets
from sbert_repro.tasks import TRAIN_TASK


def _run(args: argparse.Namespace, argv: list[str], prog: str, command_line: str) -> int:
    # Our own progress at INFO; other libraries only when something is wrong (faiss alone logs 8 lines
    # at INFO on import).
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=logging.WARNING)
    logging.getLogger("sbert_repro").setLevel(logging.INFO)
    config = None
    progress.stage("starting")
    try:
        config = search_config_from_args(args) if args.command == "search" else config_from_args(args, argv)
        _check_the_hub(args.command, config)
        # Imported only now: torch and sentence-transformers take seconds to import, and --help or a bad
        # option should answer at once.
        from sbert_repro import pipeline
        from sbert_repro.search import commands as index

        commands = {"evaluate": pipeline.evaluate, "finetune": pipeline.finetune,
                    "index": index.index_corpus, "search": index.search_index}
        commands[args.command](config)
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        # A disk that fills up (or is read-only) anywhere else, saving a model or a checkpoint say: the commands'
        # own cleanup has run on the way out; what the user can do about it fits on one line.
        if error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):  # EACCES may be a read: not ours to word
            raise
        print(f"{prog}: error: {write_failed(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # Ctrl-C: one line, not a traceback (the commands' own cleanup has already run on the way out); on a line
        # of its own, as a progress bar may have been cut off mid-line.
        print(f"\n{prog}: interrupted while {progress.current()}; "
              f"{_what_now(args.command, config, argv, command_line)}", file=sys.stderr)
        return 130
    return 0


def _check_the_hub(command: str, config: RunConfig | SearchConfig) -> None:
    """Ask once, before the Hugging Face libraries are imported (seconds), whether the hub answers. If not, they
    are put offline, to read their caches at once instead of retrying each download for half a minute, and a
    run that needs hub data the cache does not hold stops here, in one line."""
    if isinstance(config, SearchConfig):
        return
    hub_data = command != "index" and config.data_dir is None
    if not hub_data and Path(config.model).expanduser().exists():
        return
    reason = stay_offline_if_hub_unreachable()
    if reason is None or not hub_data:
        return
    stages = OBJECTIVE_STAGES[config.objective] if command == "finetune" else ()
    sts_tasks = config.sts_tasks + ((TRAIN_TASK,) if command == "finetune" else ())
    nli_task = config.nli_task if any(stage.startswith("nli") for stage in stages) else None
    missing = uncached_hub_datasets(hub_datasets(sts_tasks, config.retrieval_tasks, nli_task))
    if missing:
        raise UsageError(f"cannot load {missing[0]} from the Hugging Face hub ({reason}; not in the local cache "
                         "either); offline, pass --data-dir DIR with local copies laid out as ../shared/data")


def _what_now(command: str, config: RunConfig | SearchConfig | None, argv: list[str], command_line: str) -> str:
    """What an interrupted command left, and how to go on from there."""
    if not isinstance(config, RunConfig) or command == "search":
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
    """`sbert-repro evaluate|finetune|index|search ...`"""
    argv = list(sys.argv[1:] if argv is None else argv)
    return _run(build_parser("sbert-repro").parse_args(argv), argv, "sbert-repro", "sbert-repro")


def finetune_script(argv: list[str] | None = None, prog: str = "finetune.py") -> int:
    """`python scripts/finetune.py ...`"""
    argv = list(sys.argv[1:] if argv is None else argv)
    return _run(build_finetune_parser(prog).parse_args(argv), argv, prog, "python scripts/finetune.py")


if __name__ == "__main__":
    sys.exit(main())
