"""The fake API server's object model: resources it serves, API errors, selectors and patches."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "RESOURCES",
    "ApiError",
    "Key",
    "Resource",
    "json_patch",
    "matches",
    "merge_patch",
    "normalise_quantities",
    "utc_now",
]


@dataclass(frozen=True)
class Resource:
    prefix: str  # "api/v1" or "apis/<group>/<version>"
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return self.prefix.removeprefix("apis/").removeprefix("api/")


RESOURCES = (
    Resource("api/v1", "namespaces", "Namespace", namespaced=False),
    Resource("api/v1", "pods", "Pod"),
    Resource("api/v1", "services", "Service"),
    Resource("api/v1", "configmaps", "ConfigMap"),
    Resource("api/v1", "events", "Event"),
    Resource("apis/apps/v1", "deployments", "Deployment"),
    Resource("apis/networking.k8s.io/v1", "networkpolicies", "NetworkPolicy"),
    Resource("apis/policy/v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    Resource("apis/monitoring.coreos.com/v1", "servicemonitors", "ServiceMonitor"),
    Resource("apis/monitoring.coreos.com/v1", "podmonitors", "PodMonitor"),
)

Key = tuple[str, str, str, str]  # prefix, plural, namespace ("" when cluster-scoped), name


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


def utc_now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def matches(labels: dict[str, str], selector: str) -> bool:
    """Equality and existence label selectors (``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, ``a in (x,y)``)."""
    if not selector:
        return True
    terms: list[str] = []
    depth, cur = 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    terms.append(cur)
    for raw in terms:
        term = raw.strip()
        if not term:
            continue
        if " in " in term or " notin " in term:
            neg = " notin " in term
            key, values = term.split(" notin " if neg else " in ", 1)
            options = {v.strip() for v in values.strip().strip("()").split(",")}
            inside = labels.get(key.strip()) in options
            if inside == neg:
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 JSON patch: add, remove, replace, test."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = _pointer(op["path"])
        parent: Any = doc
        for part in parts[:-1]:
            try:
                parent = parent[int(part)] if isinstance(parent, list) else parent[part]
            except (KeyError, IndexError, ValueError) as exc:
                raise ApiError(422, "Invalid", f"json patch path {op['path']} does not exist") from exc
        last = parts[-1]
        kind = op["op"]
        try:
            if kind == "test":
                current = parent[int(last)] if isinstance(parent, list) else parent[last]
                if current != op["value"]:
                    raise ApiError(422, "Invalid", f"json patch test failed at {op['path']}")
            elif kind == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif kind == "add" and isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), op["value"])
            elif kind in ("add", "replace"):
                if kind == "replace" and (last not in parent if isinstance(parent, dict) else False):
                    raise ApiError(422, "Invalid", f"json patch replace of missing {op['path']}")
                if isinstance(parent, list):
                    parent[int(last)] = op["value"]
                else:
                    parent[last] = op["value"]
            else:
                raise ApiError(422, "Invalid", f"unsupported json patch op {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            raise ApiError(422, "Invalid", f"json patch {kind} at {op['path']} failed: {exc}") from exc
    return doc


def normalise_quantities(obj: dict[str, Any]) -> None:
    """Resource quantities come back as strings from a real API server (``1`` is returned as ``"1"``)."""
    spec = obj.get("spec") or {}
    pod_spec = ((spec.get("template") or {}).get("spec")) if "template" in spec else spec
    for container in (pod_spec or {}).get("containers") or []:
        for section in ((container.get("resources") or {}).get(k) for k in ("requests", "limits")):
            if isinstance(section, dict):
                for key, value in list(section.items()):
                    section[key] = str(value)
