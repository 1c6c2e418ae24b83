"""The fault's end on the record: when a network block stopped dropping, not when its undo activity ended.

On the agent route the undo activity also waits for the agent pods to be deleted (the sandbox's kubelet took
up to 30 s), so a 3 s block read as 9-14 s of fault in the report's phases. The lift's landing carries the
instant the last table went (``lifted_ns``); the control moves the end back to it, only where every fault of the
repetition is a network block (a compound experiment's other fault may last longer)."""

from __future__ import annotations

from typing import Any

from harness.chaos.control import effective_end
from harness.faults import network_block

S = 1_000_000_000
T0, END = 100 * S, 114 * S
BLOCK = [{"kind": network_block.NAME, "targets": ["a"], "record": {}}, {"kind": f"undone:{network_block.NAME}"}]


def _lift(lifted_ns: int | None) -> list[dict[str, Any]]:
    return [{"check": "a connection to each blocked replica fails", "measured": {"route": "agent"}},
            {"check": "connections succeed after the block was lifted", "measured": {"lifted_ns": lifted_ns}}]


def test_a_network_block_ends_when_its_tables_went() -> None:
    assert effective_end(T0, END, BLOCK, _lift(104 * S)) == 104 * S


def test_without_a_lift_instant_or_with_another_fault_the_activity_end_stays() -> None:
    assert effective_end(T0, END, BLOCK, _lift(None)) == END  # a platform that cannot say (a NetworkPolicy)
    compound = [*BLOCK, {"kind": "memory-pressure", "targets": ["a"], "record": {}}]
    assert effective_end(T0, END, compound, _lift(104 * S)) == END
    assert effective_end(None, END, BLOCK, _lift(104 * S)) == END  # no fault started: nothing to move


def test_the_end_is_never_before_the_start_nor_after_the_activity() -> None:
    assert effective_end(T0, END, BLOCK, _lift(90 * S)) == T0
    assert effective_end(T0, END, BLOCK, _lift(120 * S)) == END
