"""The compacted request timeline: one Parquet file a repetition, scanned in row groups.

While the load runs, writers keep the one-second Arrow chunks (``harness.timeline``): a crash loses at
most a second. When the load has stopped, ``compact`` streams the chunks, in the order ``read_timeline``
merges them, into ``timeline.parquet`` beside them and then removes them. A day at 1k requests/s is
86,400 chunks; one file of 2**20-row groups is what the streamed analysis (``harness.analysis._stream``)
scans in flat memory.

Why Parquet and not an Arrow IPC file: every row group carries min/max statistics of every column in the
footer, so the filtered scans around bad windows skip the row groups whose ``start_ns`` range cannot
hold the instants they look for, without a sidecar index; columns are read one by one (the analysis reads
four of eight); and the low-cardinality string columns (outcome, error class, replica, protocol, worker)
are dictionary-encoded per row group, about a byte a request, with the schema unchanged for every reader.
An Arrow IPC file has no statistics and refuses a dictionary that changes between batches.

Compaction is crash-safe: the file is written under a temporary name, fsynced and renamed, and it names
the chunks it holds (key-value metadata), so chunks a crash left behind after the rename are recognised
as already compacted and removed, never counted twice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from harness.timeline import _CHUNKS_KEY, COMPACT_FILE, SCHEMA, _compacted_chunks, timeline_files

__all__ = ["COMPACT_FILE", "ROW_GROUP", "CompactTimeline", "RowGroupStats", "compact", "write_compacted"]

ROW_GROUP = 1 << 20
_DICTIONARY_COLUMNS = ["outcome", "error_class", "status", "replica", "protocol", "worker"]


def write_compacted(path: Path, batches: Iterator[pa.RecordBatch], chunk_names: list[str],
                    row_group: int = ROW_GROUP) -> int:
    """Write ``batches`` as row groups of ``row_group`` rows to ``path`` (atomically); returns the rows.

    Buffers at most one row group, so memory is flat whatever the timeline's length."""
    schema = SCHEMA.with_metadata({_CHUNKS_KEY: "\n".join(chunk_names).encode()})
    tmp = path.with_name(path.name + ".tmp")
    rows = 0
    pending: list[pa.RecordBatch] = []
    buffered = 0
    with pq.ParquetWriter(tmp, schema, compression="snappy", use_dictionary=_DICTIONARY_COLUMNS,
                          write_statistics=True) as writer:
        def flush() -> None:
            nonlocal pending, buffered
            if buffered:
                writer.write_table(pa.Table.from_batches(pending, schema=schema), row_group_size=row_group)
            pending, buffered = [], 0

        for batch in batches:
            while batch.num_rows:
                take = min(batch.num_rows, row_group - buffered)
                pending.append(batch.slice(0, take).replace_schema_metadata(schema.metadata))
                buffered += take
                rows += take
                batch = batch.slice(take)
                if buffered == row_group:
                    flush()
        flush()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return rows


def compact(directory: Path, row_group: int = ROW_GROUP) -> Path | None:
    """Fold the chunks of a timeline folder into ``timeline.parquet``; the file's path, None when the
    folder holds no timeline at all. Call it only once the load has stopped (no writer is appending)."""
    target = directory / COMPACT_FILE
    chunks = timeline_files(directory)
    if target.exists():
        done = _compacted_chunks(target)
        for leftover in [c for c in chunks if c.name in done]:
            leftover.unlink(missing_ok=True)  # a crash between the rename and the removal
        chunks = [c for c in chunks if c.name not in done]
        if not chunks:
            return target
        names = sorted(done) + [c.name for c in chunks]
    else:
        if not chunks:
            return None
        names = [c.name for c in chunks]

    def batches() -> Iterator[pa.RecordBatch]:
        if target.exists():
            yield from pq.ParquetFile(target).iter_batches(batch_size=ROW_GROUP)
        for path in chunks:
            with pa.memory_map(str(path)) as source:
                yield from ipc.open_stream(source)

    write_compacted(target, batches(), names, row_group)
    for path in chunks:
        path.unlink(missing_ok=True)
    return target


@dataclass(frozen=True)
class RowGroupStats:
    """One row group's extent: its first row's global index and its columns' ranges (footer statistics)."""

    index: int
    offset: int
    rows: int
    start_min: int
    start_max: int
    latency_min: float
    latency_max: float

    @property
    def instant_max(self) -> int:
        """No request of the group counts later than this (a request counts at its start or its end)."""
        return self.start_max + round(max(0.0, self.latency_max) * 1e9) + 1


def _pool() -> pa.MemoryPool:
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without jemalloc
        return pa.system_memory_pool()


class CompactTimeline:
    """A compacted timeline opened for batched scans (row groups, chosen columns, skipped by statistics)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Arrow's default pool (mimalloc) and threaded decoding keep what the decoders free in per-thread
        # heaps: reading ten row groups grew RSS by 430 MB while Arrow held 24 MB. One thread and jemalloc
        # (its decay gives pages back) keep RSS flat; decoding is not what bounds a two-core scan.
        self._reader = pq.ParquetReader(memory_pool=_pool())
        self._reader.open(str(path), read_dictionary=["outcome", "error_class"])
        meta = self._reader.metadata
        names = [meta.schema.column(i).name for i in range(meta.num_columns)]
        self._index = {name: i for i, name in enumerate(names)}
        s, lat = names.index("start_ns"), names.index("latency_s")
        groups: list[RowGroupStats] = []
        offset = 0
        for i in range(meta.num_row_groups):
            rg = meta.row_group(i)
            st, lt = rg.column(s).statistics, rg.column(lat).statistics
            if rg.num_rows and (st is None or lt is None or not st.has_min_max or not lt.has_min_max):
                raise ValueError(f"{path}: row group {i} has no statistics; rebuild it with harness.timeline_store")
            if rg.num_rows:
                groups.append(RowGroupStats(i, offset, rg.num_rows, int(st.min), int(st.max),
                                            float(lt.min), float(lt.max)))
            offset += rg.num_rows
        self.groups = groups
        self.rows = offset

    def read(self, group: RowGroupStats, columns: list[str]) -> pa.Table:
        table: pa.Table = self._reader.read_row_group(group.index, column_indices=[self._index[c] for c in columns],
                                                      use_threads=False)
        return table

    def scan(self, columns: list[str], groups: list[RowGroupStats] | None = None
             ) -> Iterator[tuple[RowGroupStats, pa.Table]]:
        for g in self.groups if groups is None else groups:
            yield g, self.read(g, columns)

    def overlapping(self, lo_ns: int, hi_ns: int) -> list[RowGroupStats]:
        """Row groups that may hold a request counting in ``[lo_ns, hi_ns)``."""
        return [g for g in self.groups if g.start_min < hi_ns and g.instant_max >= lo_ns]
