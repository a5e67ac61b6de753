"""An index folder on disk (`sbert-repro index`): the corpus in row order and its embeddings, encoded in
resumable chunks.

    documents.jsonl        {"_id", "title"?, "text"} per row, in row order (search answers with them); a folder
                           built before titles were kept holds the title in the text
    offsets.npy            byte offset of each row in documents.jsonl, and of its end
    embeddings.f32         (rows, dim) float32, memory-mapped: written chunk by chunk, never all in memory
    postprocessed.f32      (rows, dim') float32: the vectors after the transform (index --postprocess), which
                           the index holds
    encode-progress.json   rows encoded so far, and of which corpus and model: a killed encode resumes
    index.faiss            the index (row ids = rows of documents.jsonl); none for Flat, whose exact search reads
                           the vectors file itself (a Flat index would be a second copy of it, in memory and on disk)
    index.json             how it was built (model, index, timings) and its recall against exact search
    postprocess.npz        the transform its vectors took (index --postprocess), which its queries take too
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np
from pydantic import Field, ValidationError
from sentence_transformers import SentenceTransformer
from tqdm.auto import tqdm

from sbert_repro.config.checks import POOLING_MODES, PRECISIONS
from sbert_repro.data.corpus import document_text
from sbert_repro.errors import UsageError
from sbert_repro.model.encoder import check_vectors, shown
from sbert_repro.model.transforms import Transform, apply_and_normalise
from sbert_repro.runs import progress
from sbert_repro.runs.folders import interrupted_swap_hint, kill_point
from sbert_repro.runs.record_parts import Part
from sbert_repro.runs.records import write_json_atomic
from sbert_repro.search.faiss_index import VectorsOnDisk

DOCUMENTS, OFFSETS, EMBEDDINGS = "documents.jsonl", "offsets.npy", "embeddings.f32"
PROGRESS, INDEX, INDEX_META = "encode-progress.json", "index.faiss", "index.json"
POSTPROCESS, POSTPROCESSED = "postprocess.npz", "postprocessed.f32"


def write_documents(documents: Iterable[tuple[str, str, str]], folder: Path) -> tuple[int, str]:
    """Write (id, title, text) rows to folder/documents.jsonl (the title only where there is one) and their offsets;
    returns (rows, sha256 of the rows).

    Written under temporary names and renamed at the end: a bad row (UsageError) leaves nothing behind.
    """
    digest = hashlib.sha256()
    offsets = [0]
    temporary = folder / f".{DOCUMENTS}.tmp"
    try:
        with open(temporary, "wb") as file:
            for doc_id, title, text in documents:
                row = {"_id": doc_id, **({"title": title} if title else {}), "text": text}
                line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
                file.write(line)
                digest.update(line)
                offsets.append(offsets[-1] + len(line))
        np.save(folder / f".{OFFSETS}.tmp.npy", np.asarray(offsets, dtype=np.int64))
    except BaseException:
        temporary.unlink(missing_ok=True)
        (folder / f".{OFFSETS}.tmp.npy").unlink(missing_ok=True)
        raise
    os.replace(folder / f".{OFFSETS}.tmp.npy", folder / OFFSETS)
    os.replace(temporary, folder / DOCUMENTS)
    return len(offsets) - 1, digest.hexdigest()


def read_documents(folder: Path, rows: Iterable[int]) -> list[dict[str, str]]:
    """The {"_id", "title", "text"} of the given rows of folder/documents.jsonl, read by seeking (not the whole file).
    A damaged or cut-short documents.jsonl or offsets.npy is a UsageError naming them."""
    found = []
    try:
        offsets = np.load(folder / OFFSETS, mmap_mode="r")
        with open(folder / DOCUMENTS, "rb") as file:
            for row in rows:
                file.seek(int(offsets[row]))
                document = json.loads(file.read(int(offsets[row + 1] - offsets[row])))
                found.append({"_id": str(document["_id"]), "title": str(document.get("title", "")),
                              "text": str(document["text"])})
    except (OSError, ValueError, EOFError, IndexError, KeyError, TypeError) as error:  # JSON's and numpy's too
        raise damaged(folder, f"{DOCUMENTS} or {OFFSETS}", error) from None
    return found


def damaged(folder: Path, names: str, error: BaseException) -> UsageError:
    """One line for an index folder file that is missing, cut short or not what we wrote."""
    reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[0][:120] or type(error).__name__
    return UsageError(f"{folder}: {names} is damaged or incomplete ({reason}); rebuild the index with "
                      "`sbert-repro index ... --overwrite`")


def read_json(folder: Path, name: str) -> dict[str, Any]:
    """folder/name as a JSON object, or a UsageError saying the file is damaged."""
    try:
        value = json.loads((folder / name).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise damaged(folder, name, error) from None
    if not isinstance(value, dict):
        raise damaged(folder, name, ValueError("not a JSON object"))
    return value


def write_index(index: faiss.Index, folder: Path) -> int:
    """index.faiss, written under a temporary name and renamed; returns its size in bytes. faiss reports a failed
    write as a RuntimeError, which becomes the OSError it stands for: a full disk when the disk has no room left
    (judged before the partial file is deleted, so that the index is never serialised a second time in memory)."""
    temporary = folder / f".{INDEX}.tmp"
    try:
        faiss.write_index(index, str(temporary))
    except RuntimeError:
        full = shutil.disk_usage(folder).free < (1 << 20)
        temporary.unlink(missing_ok=True)
        raise OSError(errno.ENOSPC if full else errno.EIO, os.strerror(errno.ENOSPC if full else errno.EIO),
                      str(folder / INDEX)) from None
    os.replace(temporary, folder / INDEX)
    return (folder / INDEX).stat().st_size


def read_index_folder(folder: Path) -> tuple[dict[str, Any], faiss.Index | VectorsOnDisk]:
    """index.json and the index (index.faiss, or for Flat the vectors file), checked against each other and against
    offsets.npy: a damaged or partial folder is one line, before any model is loaded."""
    if not (folder / INDEX_META).is_file():
        raise UsageError(f"--index-dir {folder}: no finished index there ({INDEX_META}); build one with "
                         "`sbert-repro index`" + interrupted_swap_hint(folder))
    meta = read_json(folder, INDEX_META)
    try:
        IndexMeta.model_validate(meta)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise damaged(folder, INDEX_META, ValueError(f"{field}: {first['msg'][0].lower()}{first['msg'][1:]}, it holds "
                                                     f"{json.dumps(first.get('input'))[:40]}")) from None
    index = _read_index(folder, meta)
    try:
        offsets = np.load(folder / OFFSETS, mmap_mode="r")
    except (OSError, ValueError, EOFError) as error:  # EOFError: an empty file
        raise damaged(folder, OFFSETS, error) from None
    if index.ntotal != meta["rows"] or offsets.shape != (meta["rows"] + 1,):
        raise damaged(folder, f"{INDEX}, {OFFSETS} or {INDEX_META}", ValueError(
            f"{index.ntotal} vectors and {offsets.shape[0] - 1} documents for {meta['rows']} rows"))
    text = (folder / DOCUMENTS).stat().st_size if (folder / DOCUMENTS).is_file() else -1
    if offsets[0] != 0 or offsets[-1] != text or not np.all(np.diff(offsets) > 0):  # each row a line of its own
        raise damaged(folder, f"{OFFSETS} or {DOCUMENTS}", ValueError(
            f"the offsets do not split the {text}-byte {DOCUMENTS} into {meta['rows']} rows"))
    return meta, index


def _read_index(folder: Path, meta: dict[str, Any]) -> faiss.Index | VectorsOnDisk:
    """The folder's index, memory-mapped: the codes (an index's vectors, IVF's lists) stay in the file and the page
    cache, so that a search holds what it reads; an index type faiss cannot map is read whole. A Flat folder without
    index.faiss is searched exactly over its vectors file."""
    vectors = meta.get("vectors")
    if vectors is not None and not (folder / INDEX).is_file():
        if not isinstance(meta.get("dim"), int):
            raise damaged(folder, INDEX_META, ValueError("dim: missing, and the vectors file needs it"))
        try:
            return VectorsOnDisk(np.memmap(folder / vectors, dtype=np.float32, mode="r",
                                           shape=(meta["rows"], meta["dim"])))
        except (OSError, ValueError) as error:  # missing, or shorter than rows x dim
            raise damaged(folder, vectors, error) from None
    if not (folder / INDEX).is_file():
        raise UsageError(f"--index-dir {folder}: no finished index there ({INDEX}); build one with `sbert-repro "
                         "index`")
    try:
        return faiss.read_index(str(folder / INDEX), getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP))
    except RuntimeError as error:
        raise damaged(folder, INDEX, error) from None


class BuiltWith(Part):
    """index.json's config: what search rebuilds the model and reads the index with."""

    model: str
    pooling: str | None
    index: str
    precision: Literal[tuple(p for p in PRECISIONS if p != "auto")] = "fp32"  # resolved: "auto" is never recorded


class IndexMeta(Part):
    """index.json as search reads it, each field checked on load: a damaged one is one line naming it."""

    kind: Literal["index"] = "index"
    config: BuiltWith
    model: str | None = None  # the model as it resolves from anywhere (older folders: config.model only)
    model_sha256: str | None = Field(None, pattern="^[0-9a-f]{64}$")
    modules_sha256: str | None = Field(None, pattern="^[0-9a-f]{64}$")
    rows: int = Field(ge=1)
    dim: int | None = Field(None, ge=1)
    max_seq_length: int = Field(ge=1)
    pooling_given: Literal[POOLING_MODES] | None = None
    prompts: dict[str, str | None] = {}
    modules: list[str] = []
    postprocess: dict[str, str] | None = None
    vectors: Literal[(EMBEDDINGS, POSTPROCESSED)] | None = None  # a Flat index: the file it searches


def check_free_space(folder: Path, work: Path, needed: dict[str, int], resume: bool) -> None:
    """Refuse before encoding when the disk holding `work` (where index `folder` is built) cannot take what is
    still to be written there: `needed`'s bytes by file name (the vectors, the index; the text is written
    already), less what the interrupted encode `resume` continues wrote in `folder`. A disk that fills up later
    (another writer) is still one line."""
    written = (folder / EMBEDDINGS).stat().st_size if resume and (folder / EMBEDDINGS).is_file() else 0
    text = (work / DOCUMENTS).stat().st_size if (work / DOCUMENTS).is_file() else 0
    check_room(work, {**needed, EMBEDDINGS: max(needed[EMBEDDINGS] - written, 0)},
               f"--output-dir {folder}: the index", f"; {DOCUMENTS}, {size_label(text)}, is written")


def check_room(disk: Path, needed: dict[str, int], what: str, note: str = "") -> None:
    """Refuse, in one line naming `what` and each file's bytes, writing `needed` (bytes by file name) to the disk
    holding `disk` (the nearest folder of it that exists) when it has less free."""
    while not disk.exists() and disk != disk.parent:
        disk = disk.parent
    free = shutil.disk_usage(disk).free
    if sum(needed.values()) > free:
        parts = ", ".join(f"{name} {size_label(size)}" for name, size in needed.items())
        raise UsageError(f"{what} needs {size_label(sum(needed.values()))} more ({parts}{note}) and the disk has "
                         f"{size_label(free)} free; free some space or choose another --output-dir")


def check_text_fits(corpus: Path, folder: Path, work: Path) -> None:
    """Refuse before the corpus is copied when the disk holding `work` (where index `folder` is built) cannot take
    its text (about the corpus file's size)."""
    file = corpus / "corpus.jsonl" if corpus.is_dir() else corpus
    size, free = (file.stat().st_size if file.is_file() else 0), shutil.disk_usage(work).free
    if size > free:
        raise UsageError(f"--output-dir {folder}: the corpus's text needs about {size_label(size)} "
                         f"({file.name}) and the disk has {size_label(free)} free; free some space or choose "
                         "another --output-dir")


def size_label(size: int) -> str:
    """Bytes as people read them: 512 bytes, 3.4 MB, 27.03 GB (decimal units, as df -H)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} bytes"


def pool_devices(device: str, processes: int = 1) -> list[str] | None:
    """The devices of sentence-transformers' multi-process pool: every visible GPU on CUDA when several are
    visible, else `processes` CPU processes sharing the cores; None when one process will do (one GPU, or CPU)."""
    if device.startswith("cuda") and _cuda_count() > 1:
        return [f"cuda:{i}" for i in range(_cuda_count())]
    return ["cpu"] * processes if processes > 1 else None


@contextmanager
def encoding_pool(model: SentenceTransformer, processes: int, device: str):
    """sentence-transformers' multi-process pool on pool_devices, or None when one process will do."""
    devices = pool_devices(device, processes)
    if devices is None:
        yield None
        return
    # Each spawned process reads its thread count at start-up: split the cores rather than oversubscribe.
    threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // len(devices)))
    try:
        pool = model.start_multi_process_pool(devices)
    finally:
        os.environ.pop("OMP_NUM_THREADS") if threads is None else os.environ.update(OMP_NUM_THREADS=threads)
    try:
        yield pool
    finally:
        model.stop_multi_process_pool(pool)


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _reserve(path: Path, size: int) -> None:
    """Create `path` with `size` bytes of disk reserved: a write through a memory map to a full disk kills the
    process (SIGBUS) instead of raising, so a full disk has to show here, as an OSError."""
    with open(path, "wb") as file:
        try:
            os.posix_fallocate(file.fileno(), 0, size)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without it: the check before
                raise OSError(error.errno, error.strerror, str(path)) from None  # encoding has to do
            file.truncate(size)


def transform_to_disk(transform: Transform, embeddings: np.ndarray, path: Path, chunk_size: int) -> np.memmap:
    """`embeddings` through `transform` (then L2-normalised) into the float32 file `path`, chunk by chunk: neither
    the vectors nor their transform (computed in float64) are ever all in memory."""
    rows, dim = len(embeddings), transform.projection.shape[1]
    _reserve(path, rows * dim * 4)
    transformed = np.memmap(path, dtype=np.float32, mode="r+", shape=(rows, dim))
    for start in range(0, rows, chunk_size):
        transformed[start:start + chunk_size] = apply_and_normalise(transform, embeddings[start:start + chunk_size])
    transformed.flush()
    return transformed


def stored_texts(folder: Path) -> Callable[[int, int], list[str]]:
    """The texts of rows [start, stop) of folder/documents.jsonl, as encode_to_disk reads them."""
    return lambda start, stop: [document_text(document["title"], document["text"])
                                for document in read_documents(folder, range(start, stop))]


def _resume_point(folder: Path, identity: dict[str, Any], chunk_size: int) -> tuple[int, int]:
    """(rows encoded, chunk size) of the interrupted encode in `folder`, checked to be of `identity`."""
    recorded, rows, dim = read_json(folder, PROGRESS), identity["rows"], identity["dim"]
    # both ways: an option set then and not now (a document prompt, unnormalised rows) differs too
    keys = [*identity, *(key for key in recorded if key not in identity and key not in ("done", "chunk_size"))]
    differs = [key for key in keys if recorded.get(key) != identity.get(key)]
    if differs:
        key = differs[0]
        said = f"{key}: encoded {shown(recorded[key])}, now {shown(identity.get(key))}" if key in recorded else \
            f"{key} not recorded there"
        raise UsageError(f"{folder / PROGRESS}: the encode there was of another corpus or setup ({', '.join(differs)} "
                         f"differ; {said}); resume it with its own options, or start afresh with --overwrite")
    # The same chunks as before: sentence-transformers batches within a chunk, and other batches would pad
    # differently, changing the last bits of the embeddings.
    done, chunk_size = recorded.get("done"), recorded.get("chunk_size", chunk_size)
    if not isinstance(done, int) or not isinstance(chunk_size, int) or not 0 <= done <= rows or chunk_size < 1:
        raise damaged(folder, PROGRESS, ValueError("done or chunk_size out of range"))
    size = (folder / EMBEDDINGS).stat().st_size if (folder / EMBEDDINGS).is_file() else 0
    if done and size != rows * dim * 4:  # cut short (a full disk, a copy) or not ours
        raise damaged(folder, EMBEDDINGS, ValueError(f"{size} bytes, not {rows} x {dim} x 4"))
    return done, chunk_size


def encode_to_disk(model: SentenceTransformer, folder: Path, rows: int, identity: dict[str, Any], batch_size: int,
                   chunk_size: int, pool: dict | None = None,
                   on_chunk: Callable[[int], None] | None = None, normalize: bool = True,
                   prompt: str | None = None, texts: Callable[[int, int], list[str]] | None = None,
                   description: str = "encode") -> np.memmap:
    """Encode `rows` documents into folder/embeddings.f32 (float32, L2-normalised unless not `normalize`),
    `chunk_size` rows at a time, recording after each chunk how far it got: the one resumable encode of a corpus,
    for `index` (documents.jsonl's rows) and evaluation (`texts`(start, stop): a task's corpus read by offsets).
    Run again on the same folder with the same `identity` (corpus and model) it continues from there, in the chunks
    it began with; with another identity it refuses. Each document is encoded as a document, with `prompt` (None:
    the model's own). Only a chunk's texts and vectors are ever in memory."""
    texts = texts or stored_texts(folder)
    dim = model.get_embedding_dimension()
    # With a pool, a chunk holds a share for each process: one synchronisation per chunk, not per 8,192 rows, and
    # sentence-transformers splits it in 4 pieces a process (its own default would cut 103-row pieces on 8 GPUs).
    processes = len(pool["processes"]) if pool is not None else 1
    chunk_size *= processes
    # Rows left unnormalised (for a transform fitted on the vectors as the model gives them) are marked; a
    # progress file without the mark holds normalised rows.
    identity = {**identity, "rows": rows, "dim": dim, **({} if normalize else {"normalized": False})}
    progress_path = folder / PROGRESS
    done, chunk_size = _resume_point(folder, identity, chunk_size) if progress_path.is_file() else (0, chunk_size)
    identity["chunk_size"] = chunk_size
    if done == 0:
        _reserve(folder / EMBEDDINGS, rows * dim * 4)
    embeddings = np.memmap(folder / EMBEDDINGS, dtype=np.float32, mode="r+", shape=(rows, dim))
    if done == 0:
        write_json_atomic(progress_path, {**identity, "done": 0})
    # One chunk (a small corpus): sentence-transformers' own bar moves batch by batch, where this one would not.
    one_chunk = rows <= chunk_size
    bar = tqdm(total=rows, initial=done, unit="sent", desc=description, smoothing=0.1,
               disable=one_chunk or not progress.bars_shown())
    for start in range(done, rows, chunk_size):
        stop = min(start + chunk_size, rows)
        chunk = texts(start, stop)
        vectors = model.encode_document(chunk, prompt=prompt, batch_size=batch_size, normalize_embeddings=normalize,
                                        convert_to_numpy=True, show_progress_bar=one_chunk and progress.bars_shown(),
                                        pool=pool,
                                        **({"chunk_size": max(1, -(-len(chunk) // (4 * processes)))} if pool else {}))
        # the rows before this chunk stay on disk, and --resume continues from them
        check_vectors(vectors, f"{folder / EMBEDDINGS}", chunk, first_row=start)
        embeddings[start:stop] = vectors
        embeddings.flush()  # the rows reach the disk before the progress file says they are there
        write_json_atomic(progress_path, {**identity, "done": stop})
        progress.stage(f"encoding the corpus ({stop} of {rows} rows done)")
        kill_point("encoded-chunk")
        bar.update(stop - start)
        if on_chunk is not None:
            on_chunk(stop)
    bar.close()
    return embeddings

