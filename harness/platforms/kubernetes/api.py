"""The few REST calls the harness makes, through the official client, and the dry-run that only prints them.

Every call goes through ``KubeApi.request`` so that ``--dry-run`` can print each one (method, path, body
summary) and make none, and so that API errors become ``PlatformError`` with the path in the message.
Objects are plain dicts (what the manifests are), not generated model classes: server-side apply takes
the manifest as written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlencode

from harness.errors import ConfigError, PlatformError

__all__ = [
    "FIELD_MANAGER",
    "KINDS",
    "KIND_BY_NAME",
    "SWEPT_KINDS",
    "ApiFailure",
    "Kind",
    "KubeApi",
    "kind_of",
    "object_path",
]

FIELD_MANAGER = "triton-resilience-harness"


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool = True
    # Older versions that serve the same object, tried in order when ``api_version`` is not served
    # (Kubernetes 1.20 serves PodDisruptionBudgets only as policy/v1beta1; 1.25+ only as policy/v1).
    fallbacks: tuple[str, ...] = ()

    def at(self, api_version: str) -> Kind:
        return Kind(api_version, self.kind, self.plural, self.namespaced, self.fallbacks)

    def collection(self, namespace: str) -> str:
        base = f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"
        return f"{base}/namespaces/{namespace}/{self.plural}" if self.namespaced else f"{base}/{self.plural}"


KINDS = (
    Kind("v1", "Namespace", "namespaces", namespaced=False),
    Kind("v1", "Pod", "pods"),
    Kind("v1", "Service", "services"),
    Kind("v1", "ConfigMap", "configmaps"),
    Kind("v1", "Event", "events"),
    Kind("apps/v1", "Deployment", "deployments"),
    Kind("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies"),
    Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", fallbacks=("policy/v1beta1",)),
    Kind("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors"),
    Kind("monitoring.coreos.com/v1", "PodMonitor", "podmonitors"),
)

KIND_BY_NAME = MappingProxyType({k.kind: k for k in KINDS})

# What the harness creates and may therefore sweep (never Pods directly, never Events, never Namespaces
# it did not create: those are handled on their own).
SWEPT_KINDS = tuple(k for k in KINDS if k.kind not in ("Pod", "Event", "Namespace"))


def kind_of(obj: dict[str, Any]) -> Kind:
    for k in KINDS:
        if k.kind == obj.get("kind") and obj.get("apiVersion") in (k.api_version, *k.fallbacks):
            return k.at(str(obj["apiVersion"]))
    raise ConfigError(
        f"the harness does not manage {obj.get('apiVersion')}/{obj.get('kind')} objects "
        f"({(obj.get('metadata') or {}).get('name')!r}); manage it with kubectl instead"
    )


def object_path(obj: dict[str, Any], namespace: str) -> str:
    return f"{kind_of(obj).collection(namespace)}/{obj['metadata']['name']}"


class ApiFailure(PlatformError):
    """The API server answered with an error status."""

    def __init__(self, method: str, path: str, status: int, reason: str, message: str) -> None:
        super().__init__(f"{method} {path} failed: HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason


def _summary(body: Any) -> str:
    if body is None:
        return ""
    if isinstance(body, dict) and "kind" in body:
        meta = body.get("metadata") or {}
        labels = ",".join(f"{k}={v}" for k, v in sorted((meta.get("labels") or {}).items()))
        return f"{body['kind']} {meta.get('name', '')} [{labels}] ({len(json.dumps(body))} bytes)"
    text = json.dumps(body, sort_keys=True)
    return text if len(text) <= 240 else text[:237] + "..."


class KubeApi:
    """Raw JSON calls through a ``kubernetes.client.ApiClient`` (None only in dry-run)."""

    def __init__(self, client: Any, dry_run: bool = False, out: Callable[[str], None] = print) -> None:
        if client is None and not dry_run:
            raise PlatformError("no Kubernetes client; pass --kubeconfig/--context or use --dry-run")
        self.client = client
        self.dry_run = dry_run
        self.out = out
        self._served: dict[str, bool] = {}

    def _call(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None,
        body: Any,
        content_type: str,
        timeout: float | tuple[float, float] | None,
        stream: bool,
    ) -> Any:
        url_path = path + ("?" + urlencode(query) if query else "")
        if self.dry_run:
            self.out(f"[dry-run] {method} {url_path} {_summary(body)}".rstrip())
            return None
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        params = self.client.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.client.call_api(*params, _request_timeout=timeout)
        except Exception as exc:  # urllib3/SSL errors: the cluster is unreachable
            raise PlatformError(f"{method} {path}: cannot reach the Kubernetes API ({exc})") from exc
        if stream:
            if response.status >= 300:
                response.read()
                self._raise(method, path, response)
            return response.response
        response.read()
        if not 200 <= response.status < 300:
            self._raise(method, path, response)
        return json.loads(response.data) if response.data else {}

    @staticmethod
    def _raise(method: str, path: str, response: Any) -> None:
        try:
            status = json.loads(response.data)
            message, reason = status.get("message", ""), status.get("reason", "")
        except (ValueError, TypeError):
            message, reason = (response.data or b"").decode(errors="replace")[:300], ""
        raise ApiFailure(method, path, response.status, reason or str(response.reason), message)

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | tuple[float, float] | None = 30,
    ) -> Any:
        return self._call(method, path, query, body, content_type, timeout, stream=False)

    # -- discovery ------------------------------------------------------------------------------------
    def serves(self, api_version: str) -> bool:
        """Whether the cluster serves this group/version (discovery, asked once per client)."""
        if self.dry_run or api_version == "v1":
            return True
        if api_version not in self._served:
            try:
                self.request("GET", f"/apis/{api_version}")
                self._served[api_version] = True
            except ApiFailure as exc:
                if exc.status != 404:
                    raise
                self._served[api_version] = False
        return self._served[api_version]

    def resolve(self, kind: Kind) -> Kind:
        """The version of ``kind`` this cluster serves: its own, else the first served fallback.

        So one manifest (written for current clusters) applies on 1.20 and on 1.28+ alike.
        """
        for version in (kind.api_version, *kind.fallbacks):
            if self.serves(version):
                return kind if version == kind.api_version else kind.at(version)
        return kind

    def served_object(self, obj: dict[str, Any]) -> dict[str, Any]:
        """``obj`` with its apiVersion changed to one the cluster serves (same schema by construction)."""
        kind = self.resolve(kind_of(obj))
        if kind.api_version == obj.get("apiVersion"):
            return obj
        return {**obj, "apiVersion": kind.api_version}

    # -- conveniences ---------------------------------------------------------------------------------
    def get(self, path: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist (always None in dry-run)."""
        try:
            result: dict[str, Any] | None = self.request("GET", path)
        except ApiFailure as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def list(self, kind: Kind, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        kind = self.resolve(kind)
        result = self.request("GET", kind.collection(namespace), {"labelSelector": selector} if selector else None)
        return list((result or {}).get("items") or [])

    def apply(self, obj: dict[str, Any], namespace: str, force: bool = True) -> dict[str, Any] | None:
        """Server-side apply: the cluster merges our fields and records the harness as their manager."""
        query = {"fieldManager": FIELD_MANAGER, "force": "true" if force else "false"}
        obj = self.served_object(obj)
        result: dict[str, Any] | None = self.request(
            "PATCH", object_path(obj, namespace), query, obj, "application/apply-patch+yaml"
        )
        return result

    def delete(self, path: str, grace_s: float | None = None) -> bool:
        """Delete; False when it was already gone."""
        body = (
            None
            if grace_s is None
            else {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "gracePeriodSeconds": int(grace_s),
                "propagationPolicy": "Background",
            }
        )
        try:
            self.request("DELETE", path, body=body)
        except ApiFailure as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def patch(self, path: str, body: Any, content_type: str = "application/merge-patch+json") -> Any:
        return self.request("PATCH", path, body=body, content_type=content_type)

    def watch(
        self, kind: Kind, namespace: str, selector: str = "", resource_version: str = "", timeout_s: int = 60
    ) -> Iterator[dict[str, Any]]:
        """Watch events (``{"type", "object"}``) until the server ends the stream."""
        query: dict[str, Any] = {
            "watch": "true",
            "timeoutSeconds": str(timeout_s),
            "allowWatchBookmarks": "false",
        }
        if selector:
            query["labelSelector"] = selector
        if resource_version:
            query["resourceVersion"] = resource_version
        raw = self._call("GET", kind.collection(namespace), query, None, "", (5, timeout_s + 10), stream=True)
        if raw is None:
            return
        buffer = b""
        try:
            for chunk in raw.stream(None, decode_content=False):  # per chunk, as the server sends
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        finally:
            raw.release_conn()
