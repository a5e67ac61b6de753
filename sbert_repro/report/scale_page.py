"""results/scale.md: how time and memory grow with the corpus (benchmarks/scale.py's records), each point against the
memory goal, time's linearity between the two largest sizes, and memory extrapolated to MS MARCO."""

from __future__ import annotations

import re
from pathlib import Path

from sbert_repro.report.labels import minutes, provenance
from sbert_repro.report.markdown import code, markdown_table
from sbert_repro.report.plots import save_plot
from sbert_repro.report.prose import fill
from sbert_repro.report.record_groups import run_folders
from sbert_repro.runs.record_parts import ScalePoint
from sbert_repro.runs.schema import ScaleRecord

# The goal: peak memory within 1.25 x the float32 vectors plus 1.5 GiB (the interpreter, torch and a bounded
# working set), at every size; time linear in the corpus within 20% between the two largest sizes.
VECTOR_FACTOR, FIXED_BYTES, LINEAR_WITHIN = 1.25, 1.5 * 2**30, 0.20
MS_MARCO_ROWS, MS_MARCO_DIM = 8_841_823, 768


def render_scale(records: list[ScaleRecord], plots_dir: Path | None) -> str:
    """results/scale.md: each scale benchmark's table, goals and plot."""
    lines = [fill("scale", "intro"), ""]
    for record in records:
        corpus = record.corpus
        lines += [fill("scale", "benchmark", **provenance(record), model=record.config.model,
                       document_words=corpus.document_words, queries=record.config.queries,
                       took=minutes(record.wall_seconds or 0.0)), ""]
        lines += markdown_table(("documents", "command", "index", "wall", "own time", "peak resident",
                                 "peak private", "float32 vectors", "memory goal"),
                                (point_row(point, corpus.dim) for point in record.points), "rlllrrrrl")
        lines += ["", *linearity_lines(record), "", *extrapolation_lines(record)]
        name = f"scale-{run_folders([record])[0]}.png"
        if plots_dir is not None and plot_scale(record, plots_dir / name):
            lines += ["", f"![peak memory and time against the corpus size](plots/{name})"]
        lines.append("")
    return "\n".join(lines)


def what(point: ScalePoint) -> str:
    """The command as the linearity table and the plot name it, one name across sizes: evaluate; index Flat;
    search IVF,PQ16 (cold) (the IVF lists grow with the corpus)."""
    index = re.sub(r"IVF\d+", "IVF", point.index or "")
    return f"{point.command}{' ' + index if point.command != 'evaluate' else ''}" + \
        (f" ({point.state})" if point.state else "")


def vector_bytes(point: ScalePoint, dim: int) -> float:
    return 4.0 * dim * point.rows


def memory_goal(vectors: float) -> float:
    """The most a command may hold beside `vectors` bytes of float32 vectors."""
    return VECTOR_FACTOR * vectors + FIXED_BYTES


def point_row(point: ScalePoint, dim: int) -> tuple[str, ...]:
    limit = memory_goal(vector_bytes(point, dim))
    verdict = "met" if point.peak_resident_bytes <= limit else \
        f"missed by {megabytes(point.peak_resident_bytes - limit)}"
    return (f"{point.rows:,}", point.command + (f" ({point.state})" if point.state else ""), code(point.index),
            f"{point.wall_s:.1f} s", f"{point.own_s:.1f} s" if point.own_s is not None else "-",
            megabytes(point.peak_resident_bytes), megabytes(point.peak_private_bytes),
            megabytes(vector_bytes(point, dim)), verdict)


def megabytes(size: float) -> str:
    return f"{size / 1e6:,.0f} MB"


def series(record: ScaleRecord) -> dict[str, list[ScalePoint]]:
    """The points of each command (what), by corpus size."""
    found: dict[str, list[ScalePoint]] = {}
    for point in record.points:
        found.setdefault(what(point), []).append(point)
    return {name: sorted(points, key=lambda point: point.rows) for name, points in found.items()}


def linearity_lines(record: ScaleRecord) -> list[str]:
    """Each command's own time per document at the two largest sizes, and whether they agree within 20%."""
    rows = []
    for name, points in series(record).items():
        timed = [point for point in points if point.own_s]
        if len(timed) < 2 or name.startswith("search"):  # a search's cost is its 100 queries, not the corpus
            continue
        smaller, larger = timed[-2], timed[-1]
        ratio = (larger.own_s / larger.rows) / (smaller.own_s / smaller.rows)
        verdict = "no" if ratio > 1 + LINEAR_WITHIN else "yes" if ratio >= 1 - LINEAR_WITHIN else "sublinear"
        rows.append((name, f"{1e6 * smaller.own_s / smaller.rows:.1f} µs", f"{1e6 * larger.own_s / larger.rows:.1f} µs",
                     f"{ratio:.2f}", verdict))
    if not rows:
        return []
    sizes = sorted({point.rows for point in record.points})[-2:]
    return [fill("scale", "linearity", smaller=f"{sizes[0]:,}", larger=f"{sizes[1]:,}",
                 within=f"{100 * LINEAR_WITHIN:.0f}"), "",
            *markdown_table(("command", f"per document at {sizes[0]:,}", f"per document at {sizes[1]:,}", "ratio",
                             "linear"), rows, "lrrrl")]


def vector_copies(point: ScalePoint) -> int:
    """How many copies of the float32 vectors a command holds as the corpus grows: evaluate, index and a Flat index's
    search map the vectors file (1; `index` writes no Flat index of its own, so no second copy); a search of a PQ
    index holds codes and ids, not vectors (0)."""
    return 0 if point.command == "search" and "PQ" in (point.index or "") else 1


def extrapolated(points: list[ScalePoint], dim: int) -> float:
    """Peak resident memory at MS MARCO's size and dimension, on the line through the two largest sizes, each copy of
    the vectors the command holds (vector_copies) re-sized to 768 dimensions and the rest of the slope (ids, offsets)
    kept as measured."""
    smaller, larger = points[-2], points[-1]
    slope = (larger.peak_resident_bytes - smaller.peak_resident_bytes) / (larger.rows - smaller.rows)
    fixed = larger.peak_resident_bytes - slope * larger.rows
    return fixed + (slope + vector_copies(larger) * 4.0 * (MS_MARCO_DIM - dim)) * MS_MARCO_ROWS


def extrapolation_lines(record: ScaleRecord) -> list[str]:
    dim = record.corpus.dim
    vectors = 4.0 * MS_MARCO_DIM * MS_MARCO_ROWS
    limit = memory_goal(vectors)
    rows = [(name, megabytes(peak), "met" if peak <= limit else f"missed by {megabytes(peak - limit)}")
            for name, points in series(record).items() if len(points) >= 2
            for peak in [extrapolated(points, dim)]]
    if not rows:
        return []
    return [fill("scale", "extrapolation", rows=f"{MS_MARCO_ROWS:,}", dim=MS_MARCO_DIM, vectors=megabytes(vectors),
                 goal=megabytes(limit)), "",
            *markdown_table(("command", "peak resident (extrapolated)", "memory goal"), rows, "lrl")]


def plot_scale(record: ScaleRecord, path: Path) -> bool:
    """Peak resident memory and own time against the corpus size, a line per command; the memory goal dashed."""
    import matplotlib.pyplot as plt

    figure, (memory, seconds) = plt.subplots(1, 2, figsize=(11, 4.2))
    dim = record.corpus.dim
    for name, points in series(record).items():
        sizes = [point.rows for point in points]
        memory.plot(sizes, [point.peak_resident_bytes / 1e6 for point in points], marker="o", label=name)
        if not name.startswith("search") and all(point.own_s for point in points):
            seconds.plot(sizes, [point.own_s for point in points], marker="o", label=name)
    sizes = sorted({point.rows for point in record.points})
    memory.plot(sizes, [memory_goal(4.0 * dim * rows) / 1e6 for rows in sizes], color="grey",
                linestyle="--", label="goal: 1.25 x vectors + 1.5 GiB")
    memory.set_xlabel("documents")
    memory.set_ylabel("peak resident memory (MB)")
    seconds.set_xlabel("documents")
    seconds.set_ylabel("own time (s)")
    memory.legend(fontsize=7)
    seconds.legend(fontsize=7)
    figure.suptitle(f"{record.config.model}, {record.environment.hardware.cpu_cores} CPU cores", fontsize=9)
    return save_plot(figure, path)
