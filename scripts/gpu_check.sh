#!/usr/bin/env bash
# make gpu-check: on a machine with an NVIDIA GPU, run the demo suite with GPU instances and print a
# pass/fail table (harness gpu-check). Without a GPU: exit 3, nothing started. No network is needed.
#
# On a GPU machine other than the one the venv was built on (docs/gpu.md, "Running gpu-check elsewhere"):
#   HARNESS_PYTHON   the Python to run (default .venv/bin/python); it must import the harness, numpy<2,
#                    and a CUDA build of torch (a venv made with --system-site-packages sees a system torch)
#   PYTHONPATH       put a numpy 1.26 directory first when the system's numpy is 2 (the stub needs numpy<2)
# libpython of that Python is added to LD_LIBRARY_PATH (the python backend stub links it).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -e /dev/nvidia0 ] || ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU on this machine (/dev/nvidia0 or nvidia-smi missing); nothing was run." \
       "Run it where a GPU is visible (docs/gpu.md)." >&2
  exit 3
fi
PY="${HARNESS_PYTHON:-.venv/bin/python}"
if ! "$PY" -c 'import harness, numpy, sys; sys.exit(int(numpy.__version__.split(".")[0]) >= 2)' 2>/dev/null; then
  echo "gpu-check: $PY cannot import the harness with numpy<2. Carry a venv built with this machine's Python" \
       "(make setup PYTHON=python3.X), or set HARNESS_PYTHON and PYTHONPATH (docs/gpu.md)." >&2
  exit 3
fi
libdir="$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')"
export LD_LIBRARY_PATH="${libdir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$PY" -m harness.cli gpu-check "$@"
