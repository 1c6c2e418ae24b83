"""The attached platform: a Triton service started outside the harness, reached on a loopback address.

``harness attach --endpoint URL`` records it; load-only experiments and network blocks then run against it,
and ``harness detach`` (or ``down``) forgets it after undoing every fault, leaving it as it was.
"""
