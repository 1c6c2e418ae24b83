"""The request timeline: one record per request the load generator sent.

The client-side timeline is the source of truth for every SLI the harness reports (DESIGN.md), so its
schema is a contract between the load generator (which writes it) and the analysis (which reads it).

On disk a run's timeline is a folder of Arrow IPC stream files ``part-<worker>-<seq>.arrow``. Writers
append records to a small buffer and write a new chunk about once a second, so a crash loses at most
about a second and memory stays bounded for hours-long runs. When the load has stopped they are compacted
into one Parquet file (``harness.timeline_store``). ``read_timeline`` merges the compacted file and every
chunk of every worker in time order.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.ipc as ipc

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "SCHEMA",
    "ErrorClass",
    "Outcome",
    "TimelineWriter",
    "read_timeline",
    "timeline_files",
]


class Outcome(StrEnum):
    OK = "ok"
    ERROR = "error"


class ErrorClass(StrEnum):
    """Why a request failed, as the client saw it. Empty string for successful requests."""

    NONE = ""
    CONNECTION_REFUSED = "connection_refused"
    CONNECTION_RESET = "connection_reset"
    CONNECTION_CLOSED = "connection_closed"
    TIMEOUT = "timeout"
    HTTP_STATUS = "http_status"
    GRPC_STATUS = "grpc_status"
    MODEL_UNAVAILABLE = "model_unavailable"
    BAD_RESPONSE = "bad_response"
    OTHER = "other"


# start_ns: wall clock (time.time_ns) when the request was sent.
# latency_s: seconds until the response or the error arrived.
# status: HTTP status, or gRPC status code; -1 when there was no response at all.
# replica: the replica that answered (front's X-Triton-Replica header), "" when unknown.
# worker: which load process recorded the request (merging distributed runs).
SCHEMA = pa.schema(
    [
        pa.field("start_ns", pa.int64(), nullable=False),
        pa.field("latency_s", pa.float64(), nullable=False),
        pa.field("outcome", pa.string(), nullable=False),
        pa.field("error_class", pa.string(), nullable=False),
        pa.field("status", pa.int32(), nullable=False),
        pa.field("replica", pa.string(), nullable=False),
        pa.field("protocol", pa.string(), nullable=False),
        pa.field("worker", pa.string(), nullable=False),
    ]
)

_COLUMNS = [f.name for f in SCHEMA]


@dataclass
class TimelineWriter:
    """Buffers records column-wise and writes one Arrow IPC chunk per ``flush_interval_s``.

    Column lists (not per-record objects) keep the per-request cost to a few list appends.
    """

    directory: Path
    worker: str = "0"
    flush_interval_s: float = 1.0
    max_buffered: int = 50_000
    _cols: dict[str, list[Any]] = field(default_factory=dict, init=False)
    _seq: int = field(default=0, init=False)
    _last_flush: float = field(default_factory=time.monotonic, init=False)
    records_written: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cols = {name: [] for name in _COLUMNS}

    def record(
        self,
        start_ns: int,
        latency_s: float,
        outcome: str,
        error_class: str = "",
        status: int = -1,
        replica: str = "",
        protocol: str = "http",
    ) -> None:
        cols = self._cols
        cols["start_ns"].append(start_ns)
        cols["latency_s"].append(latency_s)
        cols["outcome"].append(outcome)
        cols["error_class"].append(error_class)
        cols["status"].append(status)
        cols["replica"].append(replica)
        cols["protocol"].append(protocol)
        cols["worker"].append(self.worker)
        if len(cols["start_ns"]) >= self.max_buffered or (
            time.monotonic() - self._last_flush >= self.flush_interval_s
        ):
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        n = len(self._cols["start_ns"])
        if n == 0:
            return
        batch = pa.record_batch([pa.array(self._cols[name], type=SCHEMA.field(name).type) for name in _COLUMNS],
                                schema=SCHEMA)
        final = self.directory / f"part-{self.worker}-{self._seq:06d}.arrow"
        tmp = final.with_suffix(".tmp")
        with pa.OSFile(str(tmp), "wb") as sink, ipc.new_stream(sink, SCHEMA) as out:
            out.write_batch(batch)
        os.replace(tmp, final)  # a reader never sees half a chunk
        self._seq += 1
        self.records_written += n
        self._cols = {name: [] for name in _COLUMNS}

    def close(self) -> None:
        self.flush()


def timeline_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("part-*.arrow"))


def read_timeline(directory: Path) -> pd.DataFrame:
    """All records of a run's timeline folder, sorted by ``start_ns``; an empty frame when none.

    Reads the compacted file (``harness.timeline_store``) first, then the chunks it does not hold, in
    the order compaction merges them, so the stable sort breaks ties the same way before and after."""
    from harness.timeline_store import COMPACT_FILE, _compacted_chunks

    tables = []
    done: set[str] = set()
    if (directory / COMPACT_FILE).exists():
        import pyarrow.parquet as pq

        tables.append(pq.read_table(directory / COMPACT_FILE).replace_schema_metadata(None))
        done = _compacted_chunks(directory / COMPACT_FILE)
    for path in timeline_files(directory):
        if path.name in done:
            continue
        with pa.memory_map(str(path)) as source:
            tables.append(ipc.open_stream(source).read_all())
    if not tables:
        return SCHEMA.empty_table().to_pandas()
    table = pa.concat_tables(tables)
    frame: pd.DataFrame = table.sort_by("start_ns").to_pandas()
    return frame.reset_index(drop=True)
