"""The HTTP load resolves the service's name once per TTL, not for every new connection.

On a cluster the name is a Service's (fewer dots than the pods' ``ndots:5``, so each lookup walks the search
domains first); resolved per connection, the lookups queued behind each other whenever an outage made every
request open a connection, and requests sent their SYN hundreds of milliseconds after their recorded start.
A real listener on 127.0.0.1 and the name ``localhost``; ``socket.getaddrinfo`` is watched, not replaced.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from harness.load.clients import HttpInfer


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield server.getsockname()[1]


def test_a_name_is_resolved_once_per_ttl_and_every_address_is_tried(listener: int,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    lookups: list[str] = []
    real = socket.getaddrinfo

    def watched(host: str, *args: object, **kwargs: object) -> object:
        lookups.append(host)
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", watched)
    infer = HttpInfer(f"http://localhost:{listener}", [], 1.0)
    for _ in range(20):  # localhost may resolve to ::1 first, where nothing listens: the next address is tried
        infer._connect().close()
    assert lookups.count("localhost") == 1, lookups
    infer._resolved_until = 0.0  # the TTL passed
    infer._connect().close()
    assert lookups.count("localhost") == 2, lookups


def test_a_name_that_does_not_resolve_fails_the_request_and_is_tried_again() -> None:
    infer = HttpInfer("http://no-such-service.invalid:8000", [], 1.0)
    for _ in range(2):
        with pytest.raises(OSError):
            infer._connect()
    assert infer._resolved == []
