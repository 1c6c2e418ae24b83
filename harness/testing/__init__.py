"""Test doubles the harness ships for its own tests and for users' (a fake Kubernetes API server)."""
