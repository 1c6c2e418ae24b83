"""The request timeline: one record per request the load generator sent.

The client-side timeline is the source of truth for every SLI the harness reports (DESIGN.md), so its
schema is a contract between the load generator (which writes it) and the analysis (which reads it).

On disk a run's timeline is a folder of Arrow IPC stream files ``part-<worker>-<seq>.arrow``. Writers
append records to a small buffer and write a new chunk about once a second, so a crash loses at most
about a second and memory stays bounded for hours-long runs. When the load has stopped they are compacted
into one Parquet file (``harness.timeline_store``); ``read_timeline`` merges the compacted file and every
chunk of every worker in time order.

Each writer also keeps a manifest, ``manifest-<worker>.jsonl``: one line per chunk as it is closed (name,
records, bytes, sha256) and a last line when the writer is closed (chunks, records, requests it could not
send). A copy of the folder made elsewhere (a Kubernetes worker's, harness.platforms.kubernetes.timeline_copy)
is checked against it, so a short or corrupt copy is an error, never a short timeline.
"""

from __future__ import annotations

import hashlib
import json
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
    "QUEUE_FULL_TEXT",
    "SCHEMA",
    "WORKERS_FILE",
    "ErrorClass",
    "Outcome",
    "TimelineWriter",
    "copied_workers",
    "manifest_path",
    "read_timeline",
    "timeline_files",
    "workers_note",
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
    QUEUE_FULL = "queue_full"  # Triton shed the request: the model's queue was full (max_queue_size), not an outage
    BAD_RESPONSE = "bad_response"
    OTHER = "other"


# Triton's words when a request finds the model's queue full (dynamic batcher, max_queue_size).
QUEUE_FULL_TEXT = "exceeds maximum queue size"


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
    _manifest: Any = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cols = {name: [] for name in _COLUMNS}
        self._manifest = manifest_path(self.directory, self.worker).open("a", encoding="utf-8")

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
        sink = pa.BufferOutputStream()  # one chunk (about a second of records) in memory, to hash it
        with ipc.new_stream(sink, SCHEMA) as out:
            out.write_batch(batch)
        data = sink.getvalue()
        with tmp.open("wb") as fh:
            fh.write(memoryview(data))
        os.replace(tmp, final)  # a reader never sees half a chunk
        self._seq += 1
        self.records_written += n
        self._cols = {name: [] for name in _COLUMNS}
        self._note({"chunk": final.name, "records": n, "bytes": data.size,
                    "sha256": hashlib.sha256(memoryview(data)).hexdigest()})

    def close(self, dropped: int | None = None) -> None:
        """Flush, then end the manifest with the totals; ``dropped``: scheduled requests never sent."""
        self.flush()
        if self._manifest is not None and not self._manifest.closed:
            self._note({"final": True, "chunks": self._seq, "records": self.records_written, "dropped": dropped})
            self._manifest.close()

    def _note(self, entry: dict[str, Any]) -> None:
        if self._manifest is not None and not self._manifest.closed:
            self._manifest.write(json.dumps(entry) + "\n")
            self._manifest.flush()


def manifest_path(directory: Path, worker: str) -> Path:
    return directory / f"manifest-{worker}.jsonl"


# Beside chunks copied from elsewhere (Kubernetes load workers): per worker its chunks, records, dropped
# requests and clock offset to the harness, and the sums.
WORKERS_FILE = "workers.json"


def copied_workers(directory: Path) -> dict[str, Any] | None:
    """The copy record of a timeline brought back from load workers; None for a timeline written here."""
    path = directory / WORKERS_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    return record if isinstance(record, dict) else None


def workers_note(record: dict[str, Any]) -> str:
    """One line for a report: what came back from the workers, how far their clocks were off, what they dropped."""
    workers = record.get("workers") or []
    corrected = sum(1 for w in workers if w.get("corrected"))
    dropped = record.get("dropped")
    return (f"load from {len(workers)} worker pod(s), {record.get('records')} requests; clock offsets to the "
            f"harness up to {record.get('max_abs_clock_offset_ms')} ms (uncertainty up to "
            f"±{record.get('max_clock_uncertainty_ms')} ms), {corrected} corrected; "
            + ("dropped requests not reported" if dropped is None else f"{dropped} scheduled requests dropped"))


# The compacted timeline (harness.timeline_store writes it) and the metadata key listing the chunks it holds.
COMPACT_FILE = "timeline.parquet"
_CHUNKS_KEY = b"harness.chunks"


def _compacted_chunks(path: Path) -> set[str]:
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(_CHUNKS_KEY, b"")
    return set(raw.decode().split("\n")) - {""}


def timeline_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("part-*.arrow"))


def read_timeline(directory: Path) -> pd.DataFrame:
    """All records of a run's timeline folder, sorted by ``start_ns``; an empty frame when none.

    Reads the compacted file (``harness.timeline_store``) first, then the chunks it does not hold, in
    the order compaction merges them, so the stable sort breaks ties the same way before and after."""
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
