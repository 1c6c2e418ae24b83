"""A small, honest stand-in for a Kubernetes API server, for tests on machines without a cluster.

It is a real HTTP server on 127.0.0.1 speaking the REST paths and JSON the harness and chaosk8s use, so
the official ``kubernetes`` client and ``chaosk8s`` talk to it through an ordinary kubeconfig file with
nothing patched. Behind the API sits just enough controller behaviour to matter for resilience tests:

- a Deployment owns pods named ``<deployment>-<hash>-<suffix>``; a deleted pod is replaced, and a new pod
  becomes ready ``ready_delay_s`` after it was created (plus ``HARNESS_MODEL_LOAD_DELAY_S`` x
  ``load_delay_scale`` when its template sets that variable, so a slow-load patch really is slower);
- a changed pod template (for example an env patch) rolls the pods: one surge pod at a time, an old pod
  deleted each time a new one is ready;
- core/v1 Events (Scheduled, Started, Killing, BackOff) are recorded for pods;
- ``watch=true`` streams JSON lines (ADDED / MODIFIED / DELETED) from a resourceVersion;
- ``pods/exec`` upgrades to a WebSocket with the ``v4.channel.k8s.io`` subprotocol and runs the command
  as a host process inside the pod's own directory (absolute paths in the arguments are rebased into it);
  stdout, stderr and the exit status come back on channels 1, 2 and 3 as a kubelet sends them. The
  process gets its own network namespace (``unshare -n``), so ``localhost`` in the pod is the pod's.

What it does not do (see docs/kubernetes.md): scheduling, resource accounting (``nvidia.com/gpu`` is not
checked), field ownership in server-side apply (an apply replaces the fields it names, there are no
conflicts), strategic merge by list keys (strategic merge patches are treated as JSON merge patches),
NetworkPolicy enforcement, probes against real containers, authentication, or admission.
"""

from harness.testing.k8s_fake._cluster import FakeCluster
from harness.testing.k8s_fake._model import RESOURCES, Resource

__all__ = ["RESOURCES", "FakeCluster", "Resource"]
