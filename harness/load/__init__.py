"""The load generator: Locust users on Triton's clients, writing the request timeline.

Nothing here is imported by ``import harness.load``: Locust and gevent monkey-patch the process they enter,
so they live only in the load process (``harness.load._main``) and in locustfiles. Other processes, the
CLI and the Chaos Toolkit runner included, drive load through ``harness.load.process.LoadProcess``:

    from pathlib import Path
    from harness.load.process import LoadProcess

    load = LoadProcess.start(
        endpoint_http="http://127.0.0.1:8000",      # the front (status().endpoints.http)
        endpoint_grpc="127.0.0.1:8001",             # used when protocol="grpc"
        profile=Path("loadprofiles/steady.py"),      # a locustfile with one LoadTestShape
        timeline_dir=rep_dir / "timeline",           # part-<worker>-<seq>.arrow chunks, ~1 per second
        protocol="http", users=10, rate=200.0,       # rate > 0: open loop, 200 req/s at 10 users
        duration_s=None,                             # None: until stop(); else the profile ends it
        workers=0,                                   # > 0: a Locust master and N worker processes
        timeout_s=2.0,                               # per request
        stats_path=rep_dir / "load.jsonl",           # optional: users, rps, errors, p50/p99 each second
        log_path=rep_dir / "load.log",               # optional: the process's output (else inherited)
        extra_env={"HARNESS_STEP_S": "5"},           # optional: profile parameters
        requests=RequestOptions.parse(models=["mlp"]))  # optional: models, shapes, sample data
    load.pid, load.alive()
    load.stop()        # graceful: users finish in-flight requests, chunks are flushed; returns the exit code
    load.wait(10)      # exit code, or None while it runs
    load.kill()        # SIGKILL the whole process group

``start`` returns once load is being sent, or raises ``ConfigError`` (bad profile, parameter or setting)
or ``PlatformError`` (endpoint unreachable) before any request. The load process runs in its own process
group and receives SIGTERM when the thread that started it dies, so it never outlives the harness.

Modules: ``settings`` (``LoadSettings``, the ``HARNESS_*`` variables), ``shapes`` (``HarnessShape``, base
of ``loadprofiles/*``), ``users`` (``TritonUser``), ``requests`` (the request plan, from the server's model
metadata: ``RequestOptions``), ``inputdata`` (sample data files), ``tensors`` (Triton's binary layout),
``prepared`` (the plan as bytes, and the response check), ``clients`` (HTTP and gRPC transports, error
classes), ``context`` (per-process state owned by the Locust Environment), ``process`` (``LoadProcess``),
``profile`` (finding a profile's shape), ``rundir`` (``reports/<run_id>/run.json``).
"""

__all__: list[str] = []
