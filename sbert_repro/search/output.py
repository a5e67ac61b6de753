"""What `search` prints: a table for people, JSON lines for programs; document text never drives the terminal.
The table shows control and bidirectional characters as runs/progress.for_terminal does; JSON escapes them as
\\uXXXX.
"""

from __future__ import annotations

import json
from typing import Any

from sbert_repro.data.corpus import document_text
from sbert_repro.runs.progress import UNSAFE, for_terminal


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
