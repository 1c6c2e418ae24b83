"""Kubernetes-style HTTP probes: success is a 2xx/3xx answer within the timeout, on a fresh connection."""

from __future__ import annotations

import http.client
import socket

from harness.faults.nft import PROBE_MARK

__all__ = ["PROBE_MARK", "http_probe"]


class _MarkedConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, PROBE_MARK)
        except OSError:
            pass  # not root: nftables blocks are unavailable anyway
        sock.settimeout(self.timeout)
        try:
            sock.connect((self.host, self.port))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def http_probe(host: str, port: int, path: str, timeout_s: float) -> tuple[bool, str]:
    """Return (success, reason). The reason is what an operator would want in ``status``."""
    conn = _MarkedConnection(host, port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        if 200 <= resp.status < 400:
            return True, ""
        return False, f"HTTP probe {path} answered {resp.status}"
    except TimeoutError:
        return False, f"HTTP probe {path} timed out after {timeout_s:g}s"
    except ConnectionRefusedError:
        return False, f"HTTP probe {path}: connection refused"
    except OSError as exc:
        return False, f"HTTP probe {path}: {exc.__class__.__name__}: {exc}"
    except http.client.HTTPException as exc:
        return False, f"HTTP probe {path}: {exc.__class__.__name__}"
    finally:
        conn.close()
