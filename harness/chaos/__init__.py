"""The harness's Chaos Toolkit extension: actions, probes, rollbacks and the load control.

Experiments call these by module path (``harness.chaos.actions``, ``harness.chaos.probes``,
``harness.chaos.rollbacks``) and declare ``harness.chaos.control`` as a control. Nothing here imports
gevent or locust: the load runs in its own process, so plain ``chaos run`` is safe (DESIGN.md).
"""
