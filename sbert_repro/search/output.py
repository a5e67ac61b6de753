"""What `search` prints: a table for people, JSON lines for programs; document text never drives the terminal.

A corpus is data from anywhere: an escape sequence in a document could recolour, retitle or rewrite the user's
terminal, and a bidirectional override could make a line read other than it is. The table shows such characters
as U+FFFD (tabs and line breaks as spaces, so one hit stays one line); JSON escapes them as \\uXXXX.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sbert_repro.data.corpus import document_text

# C0 and C1 control characters and DEL, and the bidirectional embeddings, overrides and isolates.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
LINE_BREAKS = re.compile("[\t\n\r\x0b\x0c\x85\u2028\u2029]")


def for_terminal(text: str) -> str:
    """`text` safe to print on one line of a terminal."""
    return UNSAFE.sub("\ufffd", LINE_BREAKS.sub(" ", text))


def as_json_line(value: Any) -> str:
    """One JSON line; json escapes only C0 controls, so C1 controls, DEL and bidi controls are escaped here
    (they can occur only inside strings, where \\uXXXX means the same character)."""
    return UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", json.dumps(value, ensure_ascii=False))


def print_results(results: list[dict[str, Any]], as_json: bool) -> None:
    """Each query and its hits: a JSON line per query, or the query and a line per hit (rank, score, id, and the
    text as it was encoded: title, then text)."""
    for result in results:
        if as_json:
            print(as_json_line(result))
            continue
        print(f"query: {for_terminal(result['query'])}")
        for hit in result["hits"]:
            text = for_terminal(document_text(hit["title"], hit["text"]))
            text = text if len(text) <= 100 else text[:99] + "…"
            print(f"  {hit['rank']:>3}  {hit['score']:.4f}  {for_terminal(hit['id'])}  {text}")
