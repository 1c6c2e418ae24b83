"""Which service a run tested: written into ``run.json`` under ``service`` so a report is evidence about
one release, not about "some Triton".

Schema (``SERVICE_SCHEMA`` 1; every key always present, "" or [] when unknown):

    "service": {
      "schema": 1,
      "platform": "local" | "attached" | "kubernetes",
      "endpoint": "http://127.0.0.1:8000",       # what the load called (HTTP; gRPC in "grpc")
      "grpc": "127.0.0.1:8001",
      "deployment": "triton",                     # Deployment (Kubernetes, the local manifest), "" attached
      "namespace": "triton-chaos",                # Kubernetes: the Deployment's namespace, "" elsewhere
      "service_name": "triton",                   # Kubernetes: the Service the load called, "" elsewhere
      "image": "nvcr.io/nvidia/tritonserver:24.10-py3",   # when the platform knows it
      "model_repository": "/path",                # local --model-repository, "" otherwise
      "server": {"name": "triton", "version": "2.51.0", "extensions": [...]},
      "models": [{"name": "mlp", "version": "1", "state": "READY", "platform": "python"}],
      "error": ""                                 # why the server's metadata could not be read
    }

The models and versions come from the server itself (its repository index), never from the harness's
own assumptions. A platform adds what only it knows through an optional ``service_identity()`` method.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness.errors import HarnessError
from harness.jsonfile import write_json_atomic
from harness.platforms.base import Platform

__all__ = ["SERVICE_SCHEMA", "describe_endpoint", "describe_service", "promql_literal", "record_service",
           "service_scope", "service_summary"]

SERVICE_SCHEMA = 1


def describe_service(platform: Platform, timeout_s: float = 3.0) -> dict[str, Any]:
    """The service as its platform and its own metadata describe it; never raises for a dead server."""
    try:
        status = platform.status()
        extra = platform.service_identity()
    except HarnessError as exc:
        return {**_empty(platform.name), "error": str(exc)}
    return describe_endpoint(status.endpoints.http, status.endpoints.grpc, platform.name, extra, timeout_s=timeout_s)


def _empty(platform: str) -> dict[str, Any]:
    return {"schema": SERVICE_SCHEMA, "platform": platform, "endpoint": "", "grpc": "", "deployment": "",
            "namespace": "", "service_name": "", "image": "", "model_repository": "",
            "server": {"name": "", "version": "", "extensions": []},
            "models": [], "error": ""}


def describe_endpoint(http: str, grpc: str = "", platform: str = "", identity: dict[str, Any] | None = None,
                      protocol: str = "http", timeout_s: float = 3.0) -> dict[str, Any]:
    """The service behind an endpoint, from its own metadata (``protocol`` picks which endpoint asks)."""
    from harness.triton.metadata import TritonMetadata

    out = _empty(platform)
    out.update(endpoint=http, grpc=grpc)
    out.update({k: v for k, v in (identity or {}).items() if k in out})
    try:
        meta = TritonMetadata(grpc if protocol == "grpc" else http, "grpc" if protocol == "grpc" else "http",
                              timeout_s)
        server = meta.server()
        out["server"] = {"name": server.name, "version": server.version, "extensions": list(server.extensions)}
        models = []
        for m in meta.repository():
            entry = {"name": m.name, "version": m.version, "state": m.state, "platform": ""}
            if m.state == "READY":
                try:
                    entry["platform"] = meta.model(m.name).platform
                except HarnessError:
                    pass
            models.append(entry)
        out["models"] = models
    except HarnessError as exc:
        out["error"] = str(exc)
    return out


def record_service(run_dir: Path, service: dict[str, Any]) -> None:
    """Add ``service`` to an existing ``run.json`` (commands whose run file another module writes)."""
    path = run_dir / "run.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    data["service"] = service
    write_json_atomic(path, data)


def service_summary(service: Mapping[str, Any] | None) -> str:
    """One line for a report: which server, where, serving which models (empty when unknown)."""
    if not service:
        return ""
    server = service.get("server") or {}
    models = ", ".join(f"{m.get('name')} v{m.get('version') or '?'} ({m.get('state') or 'not loaded'})"
                       for m in service.get("models") or ())
    where = service.get("endpoint") or service.get("grpc") or ""
    parts = [f"{server.get('name') or 'Triton'} {server.get('version') or ''}".strip(),
             f"on the {service.get('platform')} platform" if service.get("platform") else "",
             f"at {where}" if where else "",
             (f"deployment {service['namespace'] + '/' if service.get('namespace') else ''}{service['deployment']}"
              if service.get("deployment") else ""),
             f"service {service['service_name']}" if service.get("service_name") else "",
             f"image {service['image']}" if service.get("image") else "",
             f"repository {service['model_repository']}" if service.get("model_repository") else "",
             f"serving {models}" if models else "",
             f"(metadata unavailable: {service['error']})" if service.get("error") else ""]
    return "Service under test: " + ", ".join(p for p in parts if p)


def promql_literal(regex: str) -> str:
    """A regex as a PromQL string literal's content (backslashes and quotes escaped)."""
    return regex.replace("\\", "\\\\").replace('"', '\\"')


def service_scope(*documents: Mapping[str, Any]) -> str | None:
    """PromQL label matchers selecting only the service under test's series, from a platform status
    (``{**details, "endpoints": ...}``, as run.json ``settings`` holds it); None when it names no instance.

    Kubernetes: ``namespace`` and the Deployment's pods (``<deployment>-<hash>-<id>``, so replacements of
    killed pods stay in scope). Elsewhere: the ``instance`` of each replica's metrics endpoint (the
    address Prometheus scrapes), which a restarted replica keeps."""
    for doc in documents:
        for holder in (doc, doc.get("settings") if isinstance(doc.get("settings"), dict) else {}):
            if not isinstance(holder, dict):
                continue
            namespace, deployment = holder.get("namespace"), holder.get("deployment")
            if isinstance(namespace, str) and namespace and isinstance(deployment, str) and deployment:
                return (f'namespace="{promql_literal(namespace)}",'
                        f'pod=~"{promql_literal(re.escape(deployment))}-[a-z0-9]+-[a-z0-9]+"')
            endpoints = holder.get("endpoints")
            metrics = endpoints.get("metrics") if isinstance(endpoints, dict) else None
            instances = sorted({urlsplit(m if "//" in m else f"http://{m}").netloc
                                for m in metrics or [] if isinstance(m, str) and m})
            if instances:
                return f'instance=~"{promql_literal("|".join(re.escape(i) for i in instances))}"'
    return None
