"""A real single-node Kubernetes for tests and demos, built from Debian's source (``harness sandbox``)."""

from __future__ import annotations

from harness.sandbox.cluster import Sandbox, SandboxStatus

__all__ = ["Sandbox", "SandboxStatus"]
