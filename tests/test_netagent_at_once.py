"""The network block's agents add and remove their tables at once, not one after another.

An exec into an agent takes a few hundred ms; done in turn, "block every pod" began and ended as a block of some
of them (measured on the sandbox: the second pod answered 0.4 s after the first, which moved the time to recover
the harness and a client saw). Here each agent's exec waits at a barrier for every other one: in turn, the first
never gets past it.
"""

from __future__ import annotations

import threading

import pytest

from harness.platforms.kubernetes import netagent


def test_every_agent_runs_its_verb_at_the_same_time(monkeypatch: pytest.MonkeyPatch) -> None:
    agents = ["agent-a", "agent-b", "agent-c"]
    barrier = threading.Barrier(len(agents), timeout=10)
    seen: list[tuple[str, str]] = []

    def exec_in_agent(api: object, namespace: str, agent: str, verb: str) -> tuple[int, str]:
        barrier.wait()  # raises BrokenBarrierError when the others are not running alongside
        seen.append((agent, verb))
        return (0, f"removed table of {agent}") if agent != "agent-c" else (4, "nft failed")

    monkeypatch.setattr(netagent, "_run", exec_in_agent)
    results = netagent._run_all(None, "ns", agents, "remove")  # type: ignore[arg-type]
    assert sorted(seen) == [(a, "remove") for a in agents]
    assert {a: r[:2] for a, r in results.items()} == {"agent-a": (0, "removed table of agent-a"),
                                                      "agent-b": (0, "removed table of agent-b"),
                                                      "agent-c": (4, "nft failed")}
    assert netagent._spread_ms(results) >= 0
    assert netagent._run_all(None, "ns", [], "add") == {}  # type: ignore[arg-type]
