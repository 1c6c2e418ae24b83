"""Chaos and resilience test harness for NVIDIA Triton inference services.

Nothing here runs at import time: importing ``harness`` must never patch the process (gevent) or
touch the system. The CLI (``harness.cli``) is the only place that exits the process.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
