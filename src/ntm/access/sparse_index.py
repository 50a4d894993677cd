"""How sparse access memory finds the ``K`` rows nearest a key: over every row
(:class:`ExactIndex`, ``torch.topk``) or with an approximate nearest-neighbour index
(:class:`FaissIndex`: faiss-cpu's inverted-file index, kept up to date as rows change, and
an exhaustive search of the written rows while they are few).

Both rank rows by :func:`ntm.functional.cosine_similarity`; the choice of rows is a constant
for the gradient. An index is a cache, never state: :class:`FaissIndex` keeps one faiss index
per memory tensor it has seen (weakly, by identity) with the tensor's version counter; a
memory it does not know, or one changed since (other than by the step it was told about),
gets its index built again from the rows, so the rows found depend only on the memory.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary

from ..functional import NORM_EPS
from ..functional.sparse import nearest_rows

# index="auto" uses faiss from this many slots on: the fewest slots measured where a training
# step with faiss was faster than with the exact search at batch 1 and at batch 8 (2.8 and
# 3.8 ms against 3.3 and 18.4 ms; at 16,384 slots the exact search was still a little faster
# at batch 1, 1.6 against 1.7 ms: benchmarks/memory_scaling.py, results/memory_scaling.json).
FAISS_CROSSOVER = 65_536
# While at most SCAN_ROWS rows are written (a sequence of T steps writes at most T (R K + 1)),
# a search compares the key with each of them: exact, and O(written rows). Past that, the
# inverted lists (about sqrt(N) of them, at most MAX_LISTS): enough are probed to scan about
# SCAN_ROWS rows a query, and at least PROBES. With 16 probes of sqrt(N) lists whatever was
# written, a SAM trained with 128 slots (exact) failed copy at 4,096 slots: it tells its K
# rows apart by small differences of similarity, and a missed row changes what it reads and
# writes next.
MAX_LISTS = 4096
PROBES = 16
SCAN_ROWS = 16_384
# Free rows (all zeros: cosine 0 with every key) are looked for this many rows at a time.
FREE_SCAN = 65_536

INDEXES = ("auto", "exact", "faiss")


class Previous(NamedTuple):
    """The memory before a step's write, as a search is told about it."""

    memory: Tensor  # the tensor object (the in-place step passes the same one back)
    version: int  # its version counter before the write


def faiss_missing() -> str | None:
    """``None`` if faiss can be imported, else a one-line reason."""
    try:
        import faiss  # noqa: F401
    except ImportError as error:
        return f"index='faiss' needs faiss-cpu (pip install faiss-cpu): {error}"
    return None


def make_index(index: str, memory_slots: int) -> ExactIndex | FaissIndex:
    """The index ``index`` names: ``"exact"``, ``"faiss"`` (ImportError without faiss-cpu) or
    ``"auto"`` (faiss from :data:`FAISS_CROSSOVER` slots on where it is installed)."""
    if index not in INDEXES:
        raise ValueError(f"index must be one of {list(INDEXES)}, got {index!r}")
    missing = faiss_missing()
    if index == "faiss" and missing is not None:
        raise ImportError(missing)
    if index == "faiss" or (index == "auto" and missing is None
                            and memory_slots >= FAISS_CROSSOVER):
        return FaissIndex()
    return ExactIndex()


class ExactIndex:
    """Every row's similarity, then ``torch.topk``: ``O(N M)`` a search."""

    name = "exact"

    def search(self, memory: Tensor, keys: Tensor, sparse_reads: int, changed: Tensor,
               previous: Previous) -> Tensor:
        """``memory [B, N, M]``, ``keys [B, H, M]`` -> rows ``[B, H, K]`` (int64)."""
        return nearest_rows(memory, keys, sparse_reads)

    def empty(self, memory: Tensor) -> None:
        """Nothing to remember."""

    def settle(self, memory: Tensor) -> None:
        """Nothing to remember."""


class FaissIndex:
    """faiss's ``IndexIVFFlat`` on the normalised rows, one per sequence of the batch.

    Inner product on rows normalised as the cosine similarity normalises them. A search scans
    about :data:`SCAN_ROWS` indexed rows (all while fewer are indexed: then it is exact). The coarse
    centroids are fixed random unit vectors (seed 0), not trained: the memory starts empty
    and its rows change every step. Rows that are all zeros are not indexed (their cosine
    with any key is 0) and fill the results where fewer than ``K`` indexed rows score above 0.
    A step re-adds only the rows it changed. faiss runs on the CPU: on CUDA the changed rows
    and the keys are copied over, and the rows found copied back.
    """

    name = "faiss"

    def __init__(self):
        self._cache = WeakIdKeyDictionary()

    # A copy of the module (copy.deepcopy, pickle) starts with an empty cache.
    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()

    def search(self, memory: Tensor, keys: Tensor, sparse_reads: int, changed: Tensor,
               previous: Previous) -> Tensor:
        """``memory [B, N, M]`` (just written), ``keys [B, H, M]``, ``changed [B, J]`` the
        rows written since ``previous`` -> rows ``[B, H, K]`` (int64)."""
        rows = self._cache.pop(previous.memory, None)
        if (rows is not None and rows.version == previous.version
                and rows.shape == tuple(memory.shape)):
            rows.update(memory, changed)
        else:
            rows = _BatchIndex(memory)
        rows.version = None  # until settle: the step's node bumps the version once more
        self._cache[memory] = rows
        found = rows.search(memory, keys, sparse_reads)
        return torch.from_numpy(found).to(memory.device)

    def empty(self, memory: Tensor) -> None:
        """Note that ``memory`` (``[B, N, M]``, just made) is all zeros: its index is empty,
        with no pass over its rows."""
        rows = _BatchIndex(memory, empty=True)
        rows.version = memory._version
        self._cache[memory] = rows

    def settle(self, memory: Tensor) -> None:
        """Remember ``memory``'s version once the step that wrote it has returned it."""
        rows = self._cache.get(memory)
        if rows is not None:
            rows.version = memory._version


class _BatchIndex:
    """One faiss index per sequence of a batch, over one memory tensor's rows."""

    def __init__(self, memory: Tensor, empty: bool = False):
        import faiss

        batch, slots, width = memory.shape
        self.shape, self.version = tuple(memory.shape), None
        lists = max(1, min(MAX_LISTS, round(math.sqrt(slots))))
        centroids = np.random.RandomState(0).randn(lists, width).astype(np.float32)
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        self.indexes, self.indexed = [], np.zeros((batch, slots), dtype=bool)
        # The written rows of each sequence while they are few (None past SCAN_ROWS).
        self.written: list[_Written | None] = [_Written(width) for _ in range(batch)]
        for _ in range(batch):  # faiss indexes one matrix at a time
            quantizer = faiss.IndexFlatIP(width)
            quantizer.add(centroids)
            index = faiss.IndexIVFFlat(quantizer, width, lists, faiss.METRIC_INNER_PRODUCT)
            index.set_direct_map_type(faiss.DirectMap.Hashtable)  # removal by id in O(1)
            self.indexes.append((index, quantizer))
        if not empty:
            self._add_nonzero(memory)

    def _add_nonzero(self, memory: Tensor) -> None:
        """Index the rows that are not all zeros, a sequence at a time: no [B, N, M] copy."""
        batch = memory.size(0)
        nonzero = (torch.linalg.vector_norm(memory.detach(), dim=-1) > 0).cpu().numpy()
        for b in range(batch):
            rows = np.flatnonzero(nonzero[b])
            for start in range(0, rows.size, FREE_SCAN):
                part = torch.from_numpy(rows[start : start + FREE_SCAN]).to(memory.device)
                vectors = _normalised(memory[b : b + 1], part.unsqueeze(0))[0]
                self.indexes[b][0].add_with_ids(vectors, part.cpu().numpy())
                for row, vector in zip(part.tolist(), vectors, strict=True):
                    self._write(b, row, vector)
            self.indexed[b, rows] = True

    def update(self, memory: Tensor, changed: Tensor) -> None:
        """Index rows ``changed [B, J]`` of ``memory`` again as they are now."""
        values = _normalised(memory, changed)  # (B, J, M) float32, zero rows stay zero
        changed = changed.cpu().numpy()
        for b, (index, _) in enumerate(self.indexes):
            rows, first = np.unique(changed[b], return_index=True)
            vectors = values[b, first]
            was = rows[self.indexed[b, rows]]
            if was.size:
                index.remove_ids(was.astype(np.int64))
            nonzero = np.abs(vectors).sum(axis=1) > 0
            if nonzero.any():
                index.add_with_ids(vectors[nonzero], rows[nonzero].astype(np.int64))
            self.indexed[b, rows] = nonzero
            for row, vector, kept in zip(rows.tolist(), vectors, nonzero.tolist(), strict=True):
                self._write(b, row, vector if kept else None)

    def _write(self, b: int, row: int, vector: np.ndarray | None) -> None:
        """Row ``row`` of sequence ``b`` is now ``vector`` (``None``: all zeros)."""
        written = self.written[b]
        if written is None:
            return
        if vector is None:
            written.remove(row)
        else:
            written.set(row, vector)
        if written.count > SCAN_ROWS:
            self.written[b] = None  # from now on the inverted lists

    def search(self, memory: Tensor, keys: Tensor, sparse_reads: int) -> np.ndarray:
        """Rows ``[B, H, K]`` nearest ``keys [B, H, M]``: indexed rows and free rows by score."""
        queries = _normalised(keys, None)  # (B, H, M)
        found = np.empty((*queries.shape[:2], sparse_reads), dtype=np.int64)
        for b, (index, _) in enumerate(self.indexes):
            if self.written[b] is not None:
                scores, rows = self.written[b].search(queries[b], sparse_reads)
            else:
                lists = index.nlist
                index.nprobe = min(lists, max(PROBES, -(-lists * SCAN_ROWS // index.ntotal)))
                scores, rows = index.search(queries[b], sparse_reads)  # (H, K); -1: none
            free = self._free_rows(b, sparse_reads)  # score 0
            scores = np.concatenate([scores, np.zeros((len(rows), free.size), np.float32)], 1)
            rows = np.concatenate([rows, np.broadcast_to(free, (len(rows), free.size))], 1)
            scores[rows < 0] = -np.inf
            order = np.argsort(-scores, axis=1, kind="stable")[:, :sparse_reads]
            found[b] = np.take_along_axis(rows, order, 1)
            if (found[b] < 0).any():  # the probed lists and the free rows held too few
                found[b] = nearest_rows(memory[b : b + 1], keys[b : b + 1], sparse_reads)[0]
        return found

    def _free_rows(self, b: int, count: int) -> np.ndarray:
        """Up to ``count`` rows of sequence ``b`` not indexed (all zeros), lowest first."""
        indexed, found = self.indexed[b], []
        for start in range(0, indexed.size, FREE_SCAN):
            found.extend((np.flatnonzero(~indexed[start : start + FREE_SCAN]) + start)[:count])
            if len(found) >= count:
                break
        return np.asarray(found[:count], dtype=np.int64)


def _normalised(tensor: Tensor, rows: Tensor | None) -> np.ndarray:
    """``x / sqrt(|x|^2 + NORM_EPS)`` of ``tensor [B, N, M]`` (of its ``rows [B, J]`` if
    given), as float32 NumPy: an inner product of these is the cosine similarity."""
    with torch.no_grad():
        if rows is not None:
            batch = torch.arange(tensor.size(0), device=tensor.device).unsqueeze(1)
            tensor = tensor[batch, rows]  # (B, J, M)
        scale = torch.rsqrt(tensor.square().sum(-1, keepdim=True) + NORM_EPS)
        return (tensor * scale).to(device="cpu", dtype=torch.float32).numpy()


class _Written:
    """The written rows of one sequence, while they are few: their normalised vectors in one
    matrix (rows appended, a removed row replaced by the last), searched exhaustively."""

    def __init__(self, width: int):
        self.rows = np.empty(64, dtype=np.int64)
        self.vectors = np.empty((64, width), dtype=np.float32)
        self.count, self.position = 0, {}

    def set(self, row: int, vector: np.ndarray) -> None:
        at = self.position.get(row)
        if at is None:
            if self.count == len(self.rows):
                self.rows = np.resize(self.rows, 2 * self.count)
                self.vectors = np.resize(self.vectors, (2 * self.count, self.vectors.shape[1]))
            at, self.count = self.count, self.count + 1
            self.position[row], self.rows[at] = at, row
        self.vectors[at] = vector

    def remove(self, row: int) -> None:
        at = self.position.pop(row, None)
        if at is None:
            return
        last = self.count - 1
        if at != last:
            moved = int(self.rows[last])
            self.rows[at], self.vectors[at] = moved, self.vectors[last]
            self.position[moved] = at
        self.count = last

    def search(self, queries: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, rows)``, each ``[H, count]``, best first; ``-inf`` and ``-1`` where
        fewer rows are written."""
        scores = queries @ self.vectors[: self.count].T  # (H, written)
        rows = np.broadcast_to(self.rows[: self.count], scores.shape)
        if self.count < count:
            missing = count - self.count
            scores = np.concatenate([scores, np.full((len(scores), missing), -np.inf,
                                                     dtype=np.float32)], 1)
            rows = np.concatenate([rows, np.full((len(rows), missing), -1)], 1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :count]
        return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
