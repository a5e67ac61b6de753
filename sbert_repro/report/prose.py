"""The pages' prose: Markdown templates in templates/, one per page (gains.md: the tables a run prints), filled
with str.format.

A template holds a page's headings and paragraphs in page order, each section under a marker line
`<!-- section: name -->`; the tables, numbers and plots are the renderer's (results_page.py, ann_table.py,
perf_page.py), which puts each filled section where it belongs. Keeping the wording out of the Python lets it be
edited as the Markdown it is, and read as the page will read.
"""

from __future__ import annotations

import re
import string
from functools import cache
from importlib import resources

SECTION_MARKER = re.compile(r"^<!-- section: ([a-z0-9-]+) -->\n", re.MULTILINE)


@cache
def sections(page: str) -> dict[str, str]:
    """templates/<page>.md by section name, each without the blank lines around it. What stands before the first
    marker is a note for whoever edits the template, not part of any section."""
    text = (resources.files(__package__) / "templates" / f"{page}.md").read_text(encoding="utf-8")
    names_and_bodies = SECTION_MARKER.split(text)[1:]
    return {name: body.strip("\n") for name, body in zip(names_and_bodies[::2], names_and_bodies[1::2], strict=True)}


def placeholders(text: str) -> set[str]:
    """The {names} str.format fills in `text` ({{ and }} are literal braces)."""
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def fill(page: str, section: str, **values: object) -> str:
    """One section of a page's template with each {placeholder} filled from `values`. A placeholder left without
    a value, or a value the section has no place for, is a ValueError: the template and its renderer disagree."""
    text = sections(page)[section]
    wanted = placeholders(text)
    if wanted != set(values):
        raise ValueError(f"templates/{page}.md, section {section!r}: placeholders {sorted(wanted)}, "
                         f"values given for {sorted(values)}")
    return text.format(**values)


def fill_some(page: str, section: str, values: dict[str, object]) -> str:
    """fill, from a table of values that several sections share, each taking the ones it names."""
    return fill(page, section, **{name: values[name] for name in placeholders(sections(page)[section])})
