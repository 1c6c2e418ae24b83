"""Kubernetes-style HTTP probes: success is a 2xx/3xx answer within the timeout, on a fresh connection."""

from __future__ import annotations

import http.client

__all__ = ["http_probe"]


def http_probe(host: str, port: int, path: str, timeout_s: float) -> tuple[bool, str]:
    """Return (success, reason). The reason is what an operator would want in ``status``."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
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
