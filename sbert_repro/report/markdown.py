"""How the pages write Markdown: every table, a link to a record; names (a model's, a task folder's: data from
anywhere) as literal text, never as Markdown or HTML; and the scores most tables show, by their keys (the task
registry's names) and the name a column gives each."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import quote

from sbert_repro.data.tasks import HEADLINE_RETRIEVAL_TASK, RETRIEVAL_TASKS, STS_AVERAGE, TRAIN_TASK
from sbert_repro.runs.progress import for_terminal
from sbert_repro.runs.records import RECORD
from sbert_repro.runs.schema import Record

STSB = f"{TRAIN_TASK}/spearman"
STS_AVG = f"{STS_AVERAGE}/spearman"
SEARCH = f"{HEADLINE_RETRIEVAL_TASK}/ndcg@10"
STSB_SEARCH = next(f"{name}/ndcg@10" for name, task in RETRIEVAL_TASKS.items() if task.derived_from == TRAIN_TASK)
SCORE_LABELS = {STSB: "STSb Spearman", STS_AVG: "7-task STS avg",
                SEARCH: f"{RETRIEVAL_TASKS[HEADLINE_RETRIEVAL_TASK].mteb_name} nDCG@10",
                STSB_SEARCH: "STSb-as-retrieval nDCG@10"}

MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]<>|#~!])")


def text(name: str) -> str:
    """A name as literal text in a cell or a line: control characters as U+FFFD and line breaks as spaces (as on a
    terminal), and the characters Markdown or HTML would read escaped with a backslash."""
    return MARKDOWN_PUNCTUATION.sub(r"\\\1", for_terminal(name))


def code(name: str) -> str:
    """A name as a code span, `name`, that stays one cell of a table: control characters and line breaks as text()
    shows them, a backtick inside as ', and | escaped (GitHub's tables split a cell on it even inside code)."""
    return "`" + for_terminal(name).replace("`", "'").replace("|", "\\|") + "`"


RULES = {"l": "---", "r": "---:"}  # a column's alignment in the line under the header: left, right


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str | None]], align: str) -> list[str]:
    """A table's lines: the header, its rule (`align`: a letter of RULES per column) and one line per row."""
    if len(align) != len(header):
        raise ValueError(f"{len(header)} columns, {len(align)} alignments")
    lines = [markdown_row(header), "|" + "".join(f"{RULES[letter]}|" for letter in align)]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row of {len(row)} cells under {len(header)} columns: {row}")
        lines.append(markdown_row(row))
    return lines


def markdown_row(cells: Sequence[str | None]) -> str:
    """A table's line. A cell of None is left blank ("| |"), as the paper's rows leave what they do not report;
    "" still takes its two spaces."""
    return "|" + "|".join(" " if cell is None else f" {cell} " for cell in cells) + "|"


def record_link(record: Record, label: str = "record") -> str:
    """A link to the record's record.json, from a page beside records/."""
    return f"[{label}]({record_file(record)})"


def record_file(record: Record) -> str:
    """The record's path from a page beside records/, as a link target (a folder named with spaces or brackets
    stays one link)."""
    return quote(f"records/{record.path}/{RECORD}")
