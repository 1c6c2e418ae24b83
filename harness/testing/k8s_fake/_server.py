"""The fake API server's HTTP side: REST paths, discovery, apply and patches, watch streams, exec."""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import struct
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import yaml

from harness.testing.k8s_fake._exec import run_in_pod
from harness.testing.k8s_fake._model import RESOURCES, ApiError, Key, Resource, json_patch, merge_patch

if TYPE_CHECKING:
    from harness.testing.k8s_fake._cluster import FakeCluster

__all__ = ["FakeApiHandler"]

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class FakeApiHandler(BaseHTTPRequestHandler):
    fake: FakeCluster
    _raw_body = b""
    protocol_version = "HTTP/1.1"  # watch streams are chunked, as a real API server sends them

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        raw = self._raw_body
        if not raw:
            return None
        ctype = self.headers.get("Content-Type", "")
        try:
            return yaml.safe_load(raw) if "yaml" in ctype else json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, "BadRequest", f"cannot decode body: {exc}") from exc

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        self._raw_body = self.rfile.read(length) if length else b""  # always: the connection is reused
        self.fake.requests.append((method, url.path))
        try:
            if url.path in ("/version", "/version/"):
                self._send(
                    200,
                    {
                        "major": "1",
                        "minor": "30",
                        "gitVersion": self.fake.git_version,
                        "gitCommit": "0" * 40,
                        "gitTreeState": "clean",
                        "buildDate": "2026-01-01T00:00:00Z",
                        "goVersion": "go1.22",
                        "compiler": "gc",
                        "platform": "linux/amd64",
                    },
                )
                return
            bare = url.path.rstrip("/")
            if bare in ("/api", "/apis", "/api/v1") or (bare.startswith("/apis/") and bare.count("/") == 3):
                self._send(200, self._discovery(bare))
                return
            self._resource(method, url.path, query)
        except ApiError as exc:
            self._send(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _discovery(self, path: str) -> dict[str, Any]:
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"]}
        groups: dict[str, list[str]] = {}
        for r in RESOURCES:
            if r.prefix.startswith("apis/"):
                group, version = r.prefix.split("/")[1:]
                groups.setdefault(group, [])
                if version not in groups[group]:
                    groups[group].append(version)
        if path == "/apis":
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                        "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]},
                    }
                    for g, vs in groups.items()
                ],
            }
        prefix = path.lstrip("/")
        found = [r for r in RESOURCES if r.prefix == prefix]
        if not found:
            raise ApiError(404, "NotFound", f"the server could not find {path}")
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": found[0].api_version,
            "resources": [
                {
                    "name": r.plural,
                    "kind": r.kind,
                    "namespaced": r.namespaced,
                    "singularName": "",
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                }
                for r in found
            ],
        }

    def _parse(self, path: str) -> tuple[Resource, str, str, str]:
        parts = path.strip("/").split("/")
        if parts[0] == "api":
            prefix, rest = "api/" + parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            prefix, rest = "/".join(parts[:3]), parts[3:]
        else:
            raise ApiError(404, "NotFound", f"the server could not find {path}")
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        elif len(rest) == 2 and rest[0] == "namespaces" and prefix == "api/v1":
            rest = ["namespaces", rest[1]]
        if not rest:
            raise ApiError(404, "NotFound", f"the server could not find {path}")
        for res in RESOURCES:
            if res.prefix == prefix and res.plural == rest[0]:
                name = rest[1] if len(rest) > 1 else ""
                sub = rest[2] if len(rest) > 2 else ""
                return res, namespace, name, sub
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")

    def _resource(self, method: str, path: str, query: dict[str, str]) -> None:
        fake = self.fake
        res, namespace, name, sub = self._parse(path)
        key = (res.prefix, res.plural, namespace, name)
        if sub == "exec":
            self._exec(namespace, name, query)
            return
        if sub:
            raise ApiError(404, "NotFound", f"subresource {sub} is not served by the fake")
        selector = query.get("labelSelector", "")
        if method == "GET" and not name:
            if query.get("watch") in ("true", "1"):
                since = query.get("resourceVersion")
                self._stream(
                    fake.watch(
                        res,
                        namespace,
                        selector,
                        int(since) if since else None,
                        float(query.get("timeoutSeconds") or 60),
                    )
                )
            else:
                self._send(200, fake.list(res, namespace, selector))
            return
        if method == "GET":
            obj = fake.get(res.plural, namespace, name)
            if obj is None:
                raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found')
            self._send(200, obj)
        elif method == "POST":
            self._send(201, fake.create(res, namespace, self._body() or {}))
        elif method == "DELETE" and name:
            self._send(200, fake.delete(key))
        elif method == "PATCH" and name:
            self._send(200, self._patch(res, key, self._body(), query))
        else:
            raise ApiError(405, "MethodNotAllowed", f"{method} {path} is not served by the fake")

    def _patch(self, res: Resource, key: Key, body: Any, query: dict[str, str]) -> dict[str, Any]:
        fake = self.fake
        ctype = self.headers.get("Content-Type", "")
        current = fake.get(res.plural, key[2], key[3])
        if "apply-patch" in ctype:
            if not query.get("fieldManager"):
                raise ApiError(422, "Invalid", "fieldManager is required for apply patch")
            if not isinstance(body, dict) or body.get("metadata", {}).get("name") != key[3]:
                raise ApiError(400, "BadRequest", "apply body must be an object named like the path")
            if current is None:
                return fake.create(res, key[2], body)
            new = copy.deepcopy(current)
            meta = body.get("metadata") or {}
            for field in ("labels", "annotations"):
                if field in meta:
                    new["metadata"][field] = {**(new["metadata"].get(field) or {}), **meta[field]}
            for field, value in body.items():
                if field not in ("metadata", "status", "apiVersion", "kind"):
                    new[field] = value
            return fake.update(key, res, new)
        if current is None:
            raise ApiError(404, "NotFound", f'{res.plural} "{key[3]}" not found')
        if "json-patch" in ctype:
            new = json_patch(current, body)
        elif "merge-patch" in ctype:  # merge and strategic merge (the fake does not merge lists by key)
            new = merge_patch(current, body)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"patch content type {ctype!r} is not supported")
        return fake.update(key, res, new)

    def _stream(self, events: Iterator[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        for event in events:
            line = json.dumps(event).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- exec over WebSocket ---------------------------------------------------------------------------
    def _exec(self, namespace: str, name: str, query: dict[str, str]) -> None:
        pod = self.fake.get("pods", namespace, name)
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found')
        if self.headers.get("Upgrade", "").lower() != "websocket":
            raise ApiError(400, "BadRequest", "exec needs a WebSocket upgrade")
        offered = [p.strip() for p in self.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if "v4.channel.k8s.io" not in offered:
            raise ApiError(400, "BadRequest", f"no supported subprotocol in {offered}")
        accept = base64.b64encode(
            hashlib.sha1((self.headers["Sec-WebSocket-Key"] + _WS_GUID).encode()).digest()
        ).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("Sec-WebSocket-Protocol", "v4.channel.k8s.io")
        self.end_headers()
        self.wfile.flush()
        commands = parse_qs(urlsplit(self.path).query).get("command", [])
        root = self.fake.pod_root(namespace, name)
        status = run_in_pod(root, pod, commands, self._ws_send)
        self._ws_send(3, json.dumps(status).encode())
        self._ws_frame(0x8, struct.pack("!H", 1000))
        self.wfile.flush()
        self.close_connection = True

    def _ws_send(self, channel: int, data: bytes) -> None:
        step = 1 << 16
        for start in range(0, max(len(data), 1), step):
            self._ws_frame(0x2, bytes([channel]) + data[start : start + step])

    def _ws_frame(self, opcode: int, payload: bytes) -> None:
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([n])
        elif n < 1 << 16:
            header += bytes([126]) + struct.pack("!H", n)
        else:
            header += bytes([127]) + struct.pack("!Q", n)
        with contextlib.suppress(OSError):  # the client went away; the exec is over for it
            self.wfile.write(header + payload)
