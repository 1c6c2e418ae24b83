"""The load process: ``python -m harness.load._main``. Started by ``LoadProcess``, never imported.

It monkey-patches with gevent before anything else is imported (ssl and grpc must see the patched
world), so the harness's other processes (the CLI, the Chaos Toolkit runner) never contain gevent.
One process runs the users itself (``--workers 0``) or is a Locust master that starts ``--workers``
worker processes of this same module, each writing its own timeline chunks.

Handshake: it writes ``--ready-file`` once the profile is loaded, the endpoint answered and every
worker connected (``{"ok": true}``), or the reason it cannot start (``{"ok": false, "error", "exit_code"}``),
so the caller gets bad input as an exception before any load is sent.
Exit codes: 0 done (stopped or duration over), 2 bad profile/settings, 4 endpoint unreachable, 1 crash.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="harness.load._main")
    p.add_argument("--profile", required=True)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--ready-file")
    p.add_argument("--stats", help="per-second statistics, JSON lines (master/local only)")
    p.add_argument("--quiet", action="store_true", help="no live line on stdout")
    p.add_argument("--worker", action="store_true", help="be a Locust worker of --master-port")
    p.add_argument("--master-host", default="127.0.0.1")
    p.add_argument("--master-port", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from gevent import monkey

    monkey.patch_all()
    import grpc.experimental.gevent as grpc_gevent

    grpc_gevent.init_gevent()

    from harness.errors import HarnessError
    from harness.load._driver import run_master_or_local, run_worker, say_ready

    args = _parse(argv)
    ready = Path(args.ready_file) if args.ready_file else None
    try:
        if args.worker:
            return run_worker(args)
        return run_master_or_local(args, ready)
    except HarnessError as exc:
        say_ready(ready, ok=False, error=str(exc), exit_code=exc.exit_code)
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
