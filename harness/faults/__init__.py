"""Fault mechanics: undo records, the watchdog, nftables blocks, memory hogs.

The Chaos Toolkit functions in ``harness.chaos`` decide *what* to inject; these modules know *how*,
and guarantee that every injection is written down before it happens and undone afterwards.
"""
