"""The local platform: tritonserver replicas on 127.0.0.x, HAProxy as the Service, Prometheus.

Kept import-light on purpose: the per-replica shim runs ``python -m harness.platforms.local.shim``
once per container start.
"""
