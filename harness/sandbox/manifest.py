"""The reference manifest sized for the sandbox's single 2-core node.

The reference Deployment requests 1 CPU per pod, as a GPU server should on a real cluster. On the sandbox two
such pods take the whole node: a surge pod (a rollout, an env patch) cannot be scheduled, and neither can the
in-cluster load's Locust pods, so every experiment from the command ``harness sandbox up`` printed waited 180 s
for load pods that stayed Pending. This copy requests 50m and 64Mi per container; probes, ports, strategy and
everything else are the reference's, so what is measured on it means what it means on the reference.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from harness.deployment import DEFAULT_MANIFEST, load_manifest_documents

__all__ = ["SMALL_RESOURCES", "write_small_manifest"]

SMALL_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}}


def write_small_manifest(path: Path, grace_s: int | None = None) -> Path:
    """Write the reference manifest with the sandbox's requests to ``path``; ``grace_s`` also shortens the
    pods' termination grace period (the tests' rollouts)."""
    docs = load_manifest_documents(DEFAULT_MANIFEST)
    for doc in docs:
        if doc["kind"] == "Deployment":
            pod = doc["spec"]["template"]["spec"]
            if grace_s is not None:
                pod["terminationGracePeriodSeconds"] = grace_s
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                container["resources"] = {kind: dict(values) for kind, values in SMALL_RESOURCES.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs))
    return path
