"""Platforms the reference service runs on; each implements ``harness.platforms.base.Platform``."""
