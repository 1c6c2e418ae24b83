"""Bring the load workers' timelines back whole, with each worker's clock offset to the harness.

Every worker pod is handled on a thread of its own, all at once:
1. wait until Locust has exited in it (``/timeline/EXIT``, exit code 0);
2. measure its clock against the harness's: a small program in the pod answers each line on its stdin
   with its ``time.time_ns()``; of 16 exec round trips the one with the shortest round trip is kept, the
   offset is its answer minus the harness's midpoint, its uncertainty half that round trip (NTP's rule).
   The issue suggested a Locust message round trip through the master; the harness reaches every worker
   itself, so one hop is measured instead of two (whose uncertainties would add), and the master, which
   has exited by now, is not needed;
3. stream ``tar`` of its ``/timeline`` over the exec websocket straight into a file (one frame at a time:
   nothing holds the timeline in memory);
4. check every chunk against the manifest the worker's ``TimelineWriter`` wrote as it closed each chunk
   (records, bytes, sha256) and the manifest's last line, written when Locust exited: a missing, short,
   corrupt or unlisted chunk, or a manifest without its last line, is an error naming the worker and chunk;
5. write the chunks as ``part-<pod suffix>-<worker>-<seq>.arrow``, with ``start_ns`` corrected by the
   worker's offset when the offset is larger than its uncertainty (otherwise the clocks agree as far as
   can be measured and the times are kept as recorded).

``workers.json`` beside the chunks records per worker: chunks, records, requests it could not send
(``dropped``), the clock offset, its uncertainty and whether it was applied; the sums go into run.json and
the analysis's notes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from harness.errors import FaultError, PlatformError
from harness.jsonfile import write_json_atomic
from harness.platforms.kubernetes.api import KubeApi
from harness.platforms.kubernetes.faults import exec_raw
from harness.platforms.kubernetes.podexec import STDERR, STDOUT, PodExec
from harness.timeline import WORKERS_FILE

__all__ = ["ClockOffset", "CopyReport", "WorkerCopy", "copy_timelines", "measure_clock", "stream_to_file",
           "worker_prefixes"]

CLOCK_SAMPLES = 16
TIMELINE = "/timeline"
# Answers each line on stdin with this clock; "q" (or the end of stdin) ends it.
_CLOCK_PROGRAM = (
    "import sys, time\n"
    "r, w = sys.stdin.buffer, sys.stdout.buffer\n"
    "while True:\n"
    "    line = r.readline()\n"
    "    if not line or line.startswith(b'q'):\n"
    "        break\n"
    "    w.write(b'%d\\n' % time.time_ns()); w.flush()\n"
)


@dataclass(frozen=True)
class ClockOffset:
    """A worker's clock minus the harness's; the truth lies within ``offset_ns ± uncertainty_ns``."""

    offset_ns: int
    uncertainty_ns: int
    samples: int

    @property
    def significant(self) -> bool:
        return abs(self.offset_ns) > self.uncertainty_ns


@dataclass(frozen=True)
class WorkerCopy:
    pod: str
    worker: str  # the worker id inside its timeline (``HARNESS_WORKER_ID``)
    chunks: int
    records: int
    bytes: int
    dropped: int | None  # scheduled requests the worker could not send (None: it did not say)
    clock: ClockOffset
    corrected: bool
    copy_s: float
    files: list[Path] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"pod": self.pod, "worker": self.worker, "chunks": self.chunks, "records": self.records,
                "bytes": self.bytes, "dropped": self.dropped,
                "clock_offset_ms": round(self.clock.offset_ns / 1e6, 3),
                "clock_uncertainty_ms": round(self.clock.uncertainty_ns / 1e6, 3),
                "clock_samples": self.clock.samples, "corrected": self.corrected,
                "copy_s": round(self.copy_s, 3)}


@dataclass(frozen=True)
class CopyReport:
    workers: list[WorkerCopy]

    @property
    def files(self) -> list[Path]:
        return [f for w in self.workers for f in w.files]

    @property
    def dropped(self) -> int | None:
        """Summed over the workers; None when any worker did not report it."""
        counts = [w.dropped for w in self.workers]
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)

    def to_json(self) -> dict[str, Any]:
        return {"records": sum(w.records for w in self.workers), "dropped": self.dropped,
                "max_abs_clock_offset_ms": round(max((abs(w.clock.offset_ns) for w in self.workers), default=0)
                                                 / 1e6, 3),
                "max_clock_uncertainty_ms": round(max((w.clock.uncertainty_ns for w in self.workers), default=0)
                                                  / 1e6, 3),
                "workers": [w.to_json() for w in self.workers]}


def copy_timelines(api: KubeApi, namespace: str, pods: dict[str, str], dest: Path,
                   wait_s: float = 60.0, idle_timeout_s: float = 60.0) -> CopyReport:
    """Copy every pod's ``/timeline`` into ``dest`` in parallel (``pods``: pod name -> file name prefix).

    Every worker must deliver a complete, verified timeline: PlatformError naming each one that did not
    (and what was wrong); nothing of a worker that failed is left in ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    results: dict[str, WorkerCopy | BaseException] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(pods)), thread_name_prefix="timeline-copy") as pool:
        futures = {pod: pool.submit(_copy_worker, api, namespace, pod, prefix, dest, wait_s, idle_timeout_s)
                   for pod, prefix in pods.items()}
        for pod, future in futures.items():
            try:
                results[pod] = future.result()
            except (PlatformError, FaultError, OSError, tarfile.TarError, pa.ArrowException) as exc:
                results[pod] = exc
    failed = [f"{pod} ({exc})" for pod, exc in results.items() if isinstance(exc, BaseException)]
    if failed:
        raise PlatformError("timelines missing from load workers: " + "; ".join(failed))
    report = CopyReport([r for r in results.values() if isinstance(r, WorkerCopy)])
    write_json_atomic(dest / WORKERS_FILE, report.to_json())
    return report


def measure_clock(api: KubeApi, namespace: str, pod: str, samples: int = CLOCK_SAMPLES) -> ClockOffset:
    """The pod's clock minus this machine's, from the exec round trip with the shortest round trip."""
    best: tuple[int, int] | None = None  # (round trip, offset)
    with PodExec(api, namespace, pod, ["python3", "-c", _CLOCK_PROGRAM], stdin=True, idle_timeout_s=30) as ex:
        frames = ex.frames()
        for _ in range(samples):
            sent = time.time_ns()
            ex.send(b"t\n")
            answer = _line(frames, ex.where)
            back = time.time_ns()
            offset = int(answer) - (sent + back) // 2
            if best is None or back - sent < best[0]:
                best = (back - sent, offset)
        ex.send(b"q\n")
        for _ in frames:
            pass
        if (code := ex.status()) != 0:
            raise FaultError(f"the clock probe in pod {namespace}/{pod} exited with {code}")
    assert best is not None
    return ClockOffset(offset_ns=best[1], uncertainty_ns=(best[0] + 1) // 2, samples=samples)


# -- Internals ------------------------------------------------------------------------------------------
def _line(frames: Iterator[tuple[int, bytes]], where: str) -> bytes:
    buf = b""
    for channel, data in frames:
        if channel == STDOUT:
            buf += data
            if buf.endswith(b"\n"):
                return buf.strip()
        elif channel == STDERR:
            raise FaultError(f"the clock probe in {where} failed: {data.decode(errors='replace')[:300]}")
    raise FaultError(f"the clock probe in {where} ended without answering")


def _wait_exit(api: KubeApi, namespace: str, pod: str, wait_s: float) -> None:
    """Until Locust has exited in the pod with code 0 (its wrapper writes ``/timeline/EXIT``)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            code, out, _ = exec_raw(api, namespace, pod, ["cat", f"{TIMELINE}/EXIT"], timeout_s=30, binary=True)
        except FaultError:
            code, out = -1, b""
        text = bytes(out or b"").decode(errors="replace").strip()
        if code == 0 and text:  # empty: read between the shell's truncating the file and writing the code
            break
        if time.monotonic() > deadline:
            raise PlatformError(f"Locust did not finish within {wait_s:g}s")
        time.sleep(0.5)
    if text != "0":
        raise PlatformError(f"Locust exited with code {text}; see its log (kubectl logs -n {namespace} {pod})")


def _copy_worker(api: KubeApi, namespace: str, pod: str, prefix: str, dest: Path, wait_s: float,
                 idle_timeout_s: float) -> WorkerCopy:
    _wait_exit(api, namespace, pod, wait_s)
    started = time.monotonic()
    clock = measure_clock(api, namespace, pod)
    staging = dest / f".copy-{prefix}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    written: list[Path] = []
    try:
        archive = staging / "timeline.tar"
        _stream_tar(api, namespace, pod, archive, idle_timeout_s)
        received, manifests = _unpack(archive, staging)
        worker, chunks, final = _verify(received, manifests)
        for name, _entry in chunks:
            target = dest / f"part-{prefix}-{name.removeprefix('part-')}"
            if clock.significant:
                _write_corrected(staging / name, target, clock.offset_ns)
            else:
                (staging / name).replace(target)
            written.append(target)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return WorkerCopy(pod=pod, worker=worker, chunks=len(chunks), records=int(final["records"]),
                      bytes=sum(int(e["bytes"]) for _, e in chunks), dropped=final.get("dropped"),
                      clock=clock, corrected=clock.significant, copy_s=time.monotonic() - started, files=written)


def _stream_tar(api: KubeApi, namespace: str, pod: str, archive: Path, idle_timeout_s: float) -> None:
    stream_to_file(api, namespace, pod, ["tar", "cf", "-", "-C", TIMELINE, "."], archive, idle_timeout_s)


def stream_to_file(api: KubeApi, namespace: str, pod: str, command: list[str], dest: Path,
                   idle_timeout_s: float = 60.0) -> None:
    """The command's stdout, exec'd in the pod, straight into ``dest`` one frame at a time (never whole in
    memory); PlatformError with its stderr when it exits non-zero (and FaultError when no exit status came)."""
    err = b""
    with PodExec(api, namespace, pod, command, idle_timeout_s=idle_timeout_s) as ex, dest.open("wb") as out:
        for channel, data in ex.frames():
            if channel == STDOUT:
                out.write(data)
            elif channel == STDERR and len(err) < 4096:
                err += data
        code = ex.status()
    if code != 0:
        raise PlatformError(f"{' '.join(command[:3])} in pod {namespace}/{pod} exited with {code}: "
                            f"{err.decode(errors='replace').strip()[:300]}")


def _unpack(archive: Path, staging: Path) -> tuple[dict[str, tuple[int, str]], dict[str, bytes]]:
    """Chunks (name -> bytes, sha256) written into ``staging``, and the manifests' contents, read in one pass."""
    received: dict[str, tuple[int, str]] = {}
    manifests: dict[str, bytes] = {}
    with tarfile.open(archive, mode="r|") as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            if not member.isfile() or "/" in name:
                continue
            source = tar.extractfile(member)
            if source is None:
                continue
            if name.startswith("manifest-") and name.endswith(".jsonl"):
                manifests[name] = source.read()
            elif name.startswith("part-") and name.endswith(".arrow"):
                digest, size = hashlib.sha256(), 0
                with (staging / name).open("wb") as out:
                    for block in iter(lambda: source.read(1 << 20), b""):  # noqa: B023  # used at once
                        digest.update(block)
                        size += len(block)
                        out.write(block)
                received[name] = (size, digest.hexdigest())
    return received, manifests


def _verify(received: dict[str, tuple[int, str]], manifests: dict[str, bytes]
            ) -> tuple[str, list[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """(worker id, the manifest's chunks in order, its last line); PlatformError naming what does not match."""
    if not manifests and not received:
        raise PlatformError("it never opened a timeline (no manifest, no chunk): Locust ran no user on it; "
                            "see its log and the master's")
    if len(manifests) != 1:
        raise PlatformError(f"expected one timeline manifest beside {len(received)} chunk(s), found "
                            f"{sorted(manifests) or 'none'}")
    (manifest_name, raw), = manifests.items()
    worker = manifest_name.removeprefix("manifest-").removesuffix(".jsonl")
    entries = []
    for number, line in enumerate(raw.decode(errors="replace").splitlines(), 1):
        try:
            entries.append(json.loads(line))
        except ValueError as exc:
            raise PlatformError(f"{manifest_name} line {number} is not JSON (a cut manifest?)") from exc
    if not entries or not entries[-1].get("final"):
        raise PlatformError(f"{manifest_name} has no last line: the worker did not close its timeline "
                            f"({len(entries)} chunk(s) listed)")
    final, chunks = entries[-1], [(str(e["chunk"]), e) for e in entries[:-1]]
    problems = []
    for name, entry in chunks:
        got = received.get(name)
        if got is None:
            problems.append(f"chunk {name} is missing")
        elif got[0] != int(entry["bytes"]):
            problems.append(f"chunk {name} has {got[0]} bytes, the worker wrote {entry['bytes']}")
        elif got[1] != entry["sha256"]:
            problems.append(f"chunk {name} does not match its sha256")
    listed = {name for name, _ in chunks}
    problems += [f"chunk {name} is not in {manifest_name}" for name in sorted(set(received) - listed)]
    if len(chunks) != int(final["chunks"]) or sum(int(e["records"]) for _, e in chunks) != int(final["records"]):
        problems.append(f"{manifest_name} lists {len(chunks)} chunks but closed with {final['chunks']} "
                        f"({final['records']} records)")
    if problems:
        raise PlatformError(f"worker {worker}: " + "; ".join(problems))
    return worker, chunks, final


def _write_corrected(source: Path, target: Path, offset_ns: int) -> None:
    """The chunk with ``start_ns`` moved onto the harness's clock (one chunk in memory at a time)."""
    with pa.memory_map(str(source)) as src:
        table = ipc.open_stream(src).read_all()
    index = table.schema.get_field_index("start_ns")
    table = table.set_column(index, table.schema.field(index),
                             pc.subtract(table.column(index), pa.scalar(offset_ns, pa.int64())))
    tmp = target.with_suffix(".tmp")
    with pa.OSFile(str(tmp), "wb") as sink, ipc.new_stream(sink, table.schema) as out:
        out.write_table(table)
    tmp.replace(target)


def worker_prefixes(pods: Sequence[str], base: str) -> dict[str, str]:
    """Pod name -> the prefix its chunks get (``harness-load-<run>-worker-3`` -> ``worker-3``)."""
    return {pod: pod.removeprefix(base + "-") for pod in pods}

