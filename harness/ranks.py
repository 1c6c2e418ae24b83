"""The nearest-rank percentile rule, one copy for everything that judges latency.

The q-th percentile of n values is the ``ceil(q n / 100)``-th smallest (at least the first): a value a request
really had. The analysis judges windows by it, aggregates repetitions by it, and the steady-state probe checks
the hypothesis by it: two rules would let a hypothesis deviate on windows the analysis calls good (the probe once
took ``int(0.99 n)``, which for n = 100 is the slowest request instead of the 99th).

Integer arithmetic (q in thousandths of a percent), so ``n = 100, q = 99`` is exactly 99, never 100 by a
rounding error. Standard library and numpy only: the Chaos Toolkit process imports it without the analysis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["nearest_rank", "nearest_rank_value", "nearest_ranks"]

_SCALE = 1000  # q in thousandths of a percent: 99.9 -> 99900


def _scaled(q: float) -> int:
    if not 0 < q <= 100:
        raise ValueError(f"a percentile must be within (0, 100], got {q!r}")
    return round(q * _SCALE)


def nearest_ranks(n: npt.NDArray[np.int64], q: float) -> npt.NDArray[np.int64]:
    """1-based ranks ``ceil(q n / 100)`` (at least 1) for an array of counts."""
    scaled = _scaled(q)
    ranks: npt.NDArray[np.int64] = np.maximum(1, -((-scaled * n) // (100 * _SCALE)))
    return ranks


def nearest_rank(n: int, q: float) -> int:
    """1-based rank of the q-th percentile (q in percent) among n values."""
    return max(1, -((-_scaled(q) * n) // (100 * _SCALE)))


def nearest_rank_value(values: Sequence[float] | npt.NDArray[np.float64], q: float) -> float:
    """The q-th percentile of ``values`` by nearest rank (``values`` need not be sorted; not empty)."""
    arr = np.asarray(values, dtype=np.float64)
    k = nearest_rank(len(arr), q) - 1
    return float(np.partition(arr, k)[k])
