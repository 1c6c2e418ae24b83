"""Memory hog: holds a device's free memory at a target level until its deadline (a top-up loop).

GPU mode talks to the CUDA driver API through ctypes (``libcuda.so.1``: cuMemGetInfo, cuMemAlloc),
so it needs no framework and can run inside a Triton container. Host mode is the analogue for machines
without a GPU: it joins a memory cgroup (v1 or v2) that confines one replica and holds that cgroup's free memory at
the target, so the replica (not the host) runs out of memory. Either way, memory that others release
is taken again every ``interval``: a one-shot hog is not enough (DESIGN.md).

The main path uses only the standard library, so this file's source can be shipped into a pod and
run with ``python3 -`` there.

Run: python -m harness.faults.hog --target gpu|host --leave-free-mb N --duration S [--cgroup DIR]
     [--device 0] [--chunk-mb 64] [--status-file F]
Exit: 0 after the deadline or SIGTERM (memory released), 3 when the device cannot be used.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.faults.undo import UndoRecord

MB = 1 << 20


class _Gpu:
    def __init__(self, device: int) -> None:
        self.cuda = ctypes.CDLL("libcuda.so.1")
        self._check(self.cuda.cuInit(0), "cuInit")
        dev = ctypes.c_int()
        self._check(self.cuda.cuDeviceGet(ctypes.byref(dev), device), "cuDeviceGet")
        self.ctx = ctypes.c_void_p()
        self._check(self.cuda.cuCtxCreate_v2(ctypes.byref(self.ctx), 0, dev), "cuCtxCreate")
        self.blocks: list[tuple[ctypes.c_uint64, int]] = []
        self.label = self._describe(dev)

    def _describe(self, dev: ctypes.c_int) -> str:
        """``GPU-<uuid> (<name>)`` of the device held, so a status file says which GPU was squeezed."""
        raw = (ctypes.c_ubyte * 16)()  # CUuuid: 16 bytes
        name = ctypes.create_string_buffer(256)
        if self.cuda.cuDeviceGetUuid(raw, dev) != 0:
            return f"device {dev.value}"
        h = bytes(raw).hex()
        uuid = f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        if self.cuda.cuDeviceGetName(name, ctypes.c_int(len(name)), dev) == 0:
            return f"{uuid} ({name.value.decode(errors='replace')})"
        return uuid

    @staticmethod
    def _check(code: int, what: str) -> None:
        if code != 0:
            raise OSError(f"{what} failed with CUDA error {code}")

    def free_bytes(self) -> int:
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        self._check(self.cuda.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)), "cuMemGetInfo")
        return int(free.value)

    def take(self, size: int) -> bool:
        ptr = ctypes.c_uint64()
        if self.cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(size)) != 0:
            return False
        self.blocks.append((ptr, size))
        return True

    def held(self) -> int:
        return sum(size for _, size in self.blocks)

    def release(self) -> None:
        for ptr, _ in self.blocks:
            self.cuda.cuMemFree_v2(ptr)
        self.blocks.clear()


class _HostCgroup:
    def __init__(self, cgroup: Path) -> None:
        from harness.faults.cgroups import MemoryGroup  # host mode only: the GPU path stays standard-library

        self.label = str(cgroup)
        self.group = MemoryGroup(cgroup)
        # The replica, not the hog, must be what runs out of memory: its processes get oom_score_adj
        # 1000 when they join the group (lowering the hog's own needs a capability we may lack).
        self.group.join(os.getpid())
        self.blocks: list[bytearray] = []

    def free_bytes(self) -> int:
        return self.group.free_bytes()  # limit - usage, on cgroup v1 or v2

    def take(self, size: int) -> bool:
        try:
            self.blocks.append(bytearray(b"\x01") * size)  # touched, so really charged
        except MemoryError:
            return False
        return True

    def held(self) -> int:
        return sum(len(b) for b in self.blocks)

    def release(self) -> None:
        self.blocks.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness-hog")
    parser.add_argument("--target", choices=("gpu", "host"), required=True)
    parser.add_argument("--leave-free-mb", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--cgroup", type=Path)
    parser.add_argument("--device", type=int, default=0)
    parser.add_argument("--chunk-mb", type=float, default=64)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--status-file", type=Path)
    parser.add_argument("--tag", default="", help="undo-record id, so cleanup finds this process by name")
    args = parser.parse_args(argv)
    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    try:
        if args.target == "gpu":
            device: _Gpu | _HostCgroup = _Gpu(args.device)
        else:
            if args.cgroup is None:
                parser.error("--target host needs --cgroup")
            device = _HostCgroup(args.cgroup)
    except OSError as exc:
        where = (f"device {args.device} of CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}"
                 if args.target == "gpu" else str(args.cgroup))
        print(f"hog: cannot use the {args.target} ({where}): {exc}", file=sys.stderr)
        return 3
    leave = int(args.leave_free_mb * MB)
    deadline = time.monotonic() + args.duration
    last_status = 0.0
    while not stop["now"] and time.monotonic() < deadline:
        chunk = int(args.chunk_mb * MB)
        while chunk >= MB and not stop["now"]:
            free = device.free_bytes()
            if free - chunk < leave:
                chunk //= 2
                continue
            if not device.take(chunk):
                chunk //= 2
        if args.status_file and time.monotonic() - last_status > 0.5:
            last_status = time.monotonic()
            _write_status(args.status_file, device, args.target, "holding")
        time.sleep(args.interval)
    if args.status_file:  # the last word: held until the deadline or a stop signal, never silently gone
        _write_status(args.status_file, device, args.target, "released-at-deadline" if not stop["now"]
                      else "released-on-signal")
    device.release()
    return 0


def _write_status(path: Path, device: _Gpu | _HostCgroup, target: str, state: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"held_mb": device.held() / MB, "free_mb": device.free_bytes() / MB,
                               "pid": os.getpid(), "target": target, "state": state, "ts": time.time(),
                               "device": device.label}))
    os.replace(tmp, path)


def undo(record: UndoRecord) -> None:
    """Stop the hog of one undo record. Found by its tag, not a saved pid: the record is written before
    the hog starts, so a crash between the two still finds it."""
    from harness.faults.undo import terminate

    tag = f"--tag\0{record.id}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"harness.faults.hog" in command and tag in command:
            terminate(int(entry.name))


if __name__ == "__main__":
    sys.exit(main())
