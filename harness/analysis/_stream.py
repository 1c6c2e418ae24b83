"""The timeline analysed in streamed passes over the compacted file, in flat memory.

``figures_in_memory`` reads, sorts and holds the whole timeline (about 177 B a request: 1.77 GB at ten
million). Here no pass holds more than one row group (2**20 requests) plus per-window and per-histogram
arrays, and nothing is sorted globally:

1. one full pass counts requests, failures and too-slow requests per window (a request's window is found
   from its counting instant with one ``searchsorted`` over the window boundaries, then ``bincount``), the
   error classes, and fills a latency histogram per percentile group (the three phases and the plot bins);
2. exact percentiles: the histogram says which bucket holds each wanted rank; a second pass collects the
   values of those buckets only (or, when a bucket holds too many, splits it again), so the answer is
   the very element numpy's nearest-rank percentile picks;
3. impact and recovery: the same pass finds the first offending request of the first bad window and the
   last offending one of the last bad window, reading only the row groups whose statistics overlap those
   windows; a last filtered pass finds the first good request after it.

Ties are broken as the in-memory path breaks them: by counting instant, then start, then the row's place
in the compacted file (``read_timeline`` order). ``tests/test_stream_properties.py`` holds both engines
to the same figures on generated timelines.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from harness.analysis._settings import AnalysisSettings
from harness.analysis._timeline import (
    TimelineFigures,
    TimelineQuestion,
    bound_span,
    moved_note,
    phases_of,
    rank_index,
    span_of,
)
from harness.analysis._windows import BoolArray, FloatArray, IntArray, Recovery, RecoveryState, _boundaries
from harness.timeline_store import CompactTimeline, RowGroupStats, compact

__all__ = ["ExactQuantiles", "figures_streamed", "phase_counts"]

_SERIES_POINTS = 1500  # window_series' max_points
_SIGN_FREE = np.int64(0x7FFF_FFFF_FFFF_FFFF)


def order_keys(values: FloatArray) -> IntArray:
    """int64 keys that sort like the floats (a bijection: ``keys_to_values`` undoes it)."""
    bits = values.view(np.int64)
    keys: IntArray = bits ^ ((bits >> 63) & _SIGN_FREE)
    return keys


def keys_to_values(keys: IntArray) -> FloatArray:
    bits = keys ^ ((keys >> 63) & _SIGN_FREE)
    values: FloatArray = bits.view(np.float64)
    return values


class ExactQuantiles:
    """Exact nearest-rank quantiles of many groups of values seen in batches, in bounded memory.

    ``add`` is the histogram pass; then, while ``pending``, every batch goes through ``match`` (collect the
    values of the buckets holding the wanted ranks, or histogram a bucket again when it holds more than
    ``collect_limit`` values) and ``settle`` ends the pass. Buckets split the int64 order keys of the
    values evenly, so six splits at most reach single values.
    """

    def __init__(self, quantiles: list[tuple[float, ...]], lo_key: int, hi_key: int,
                 buckets: int = 2048, collect_limit: int = 4_000_000) -> None:
        self.groups = len(quantiles)
        self.slots = max((len(q) for q in quantiles), default=1)
        self.q = np.full((self.groups, self.slots), np.nan)
        for g, qs in enumerate(quantiles):
            self.q[g, :len(qs)] = qs
        self.nb = buckets
        self.collect_limit = collect_limit
        self.lo0 = lo_key
        self.width0 = max(1, -(-(hi_key - lo_key) // buckets))
        self.hist = np.zeros(self.groups * buckets, dtype=np.int64)
        n = self.groups * self.slots
        self.lo = np.zeros(n, dtype=np.int64)
        self.width = np.ones(n, dtype=np.uint64)
        self.sub_width = np.ones(n, dtype=np.uint64)
        self.rank = np.zeros(n, dtype=np.int64)
        self.count = np.zeros(n, dtype=np.int64)
        self.mode = np.zeros(n, dtype=np.int8)  # 0 nothing to do, 1 collect, 2 split again
        self.refine_id = np.zeros(n, dtype=np.int64)
        self.value = np.full(n, np.nan)
        self.totals = np.zeros(self.groups, dtype=np.int64)
        self._collected: list[tuple[IntArray, IntArray]] = []
        self._sub: IntArray = np.zeros(0, dtype=np.int64)
        self._wanted0: BoolArray = np.zeros(buckets + 1, dtype=bool)

    def _bucket(self, keys: IntArray, lo: IntArray | int, width: npt.NDArray[np.uint64] | int) -> IntArray:
        offset = keys.view(np.uint64) - np.asarray(lo).astype(np.uint64)  # wraps exactly: key >= lo
        out: IntArray = (offset // np.asarray(width, dtype=np.uint64)).astype(np.int64)
        return out

    def add(self, groups: IntArray, keys: IntArray) -> None:
        """Histogram pass: count ``keys`` (order keys) into their groups' buckets."""
        if len(keys):
            first, last = int(groups.min()), int(groups.max())
            bucket = self._bucket(keys, self.lo0, self.width0)
            if int(bucket.max()) >= self.nb:  # NaN, or a value outside the row groups' statistics
                raise ValueError("a latency lies outside the range the timeline's statistics give; "
                                 "rebuild timeline.parquet with harness.timeline_store.compact")
            idx = (groups - first) * self.nb + bucket
            self.hist[first * self.nb:(last + 1) * self.nb] += np.bincount(idx, minlength=(last - first + 1) * self.nb)

    def start(self) -> None:
        """After the histogram pass: find each wanted rank's bucket and plan the next pass."""
        hist = self.hist.reshape(self.groups, self.nb)
        self.totals = hist.sum(axis=1)
        cum = np.cumsum(hist, axis=1)
        for g in range(self.groups):
            n = int(self.totals[g])
            for s in range(self.slots):
                q = self.q[g, s]
                if np.isnan(q) or n == 0:
                    continue
                t = g * self.slots + s
                r = rank_index(n, float(q))
                b = int(np.searchsorted(cum[g], r, side="right"))
                before = int(cum[g, b - 1]) if b else 0
                self.lo[t] = self.lo0 + b * self.width0
                self.width[t] = self.width0
                self.rank[t] = r - before
                self.count[t] = int(hist[g, b])
                self.mode[t] = 1
        self.hist = np.zeros(0, dtype=np.int64)
        self._plan()

    def _plan(self) -> None:
        active = np.flatnonzero(self.mode != 0)
        single = active[self.width[active] == 1]
        if len(single):  # a one-key bucket: every value in it is that value
            self.value[single] = keys_to_values(self.lo[single])
            self.mode[single] = 0
        active = np.flatnonzero(self.mode != 0)
        order = active[np.argsort(self.count[active], kind="stable")]
        fits = np.cumsum(self.count[order]) <= self.collect_limit
        self.mode[order[fits]] = 1
        split = order[~fits]
        self.mode[split] = 2
        self.refine_id[split] = np.arange(len(split))
        self.sub_width[split] = (self.width[split] + np.uint64(self.nb - 1)) // np.uint64(self.nb)
        self._sub = np.zeros(len(split) * self.nb, dtype=np.int64)
        self._collected = []
        busy = np.flatnonzero(self.mode != 0)
        self._wanted0 = np.zeros(self.nb + 1, dtype=bool)
        self._wanted0[np.minimum(self._bucket(self.lo[busy], self.lo0, self.width0), self.nb)] = True

    @property
    def pending(self) -> bool:
        return bool((self.mode != 0).any())

    def near(self, keys: IntArray) -> BoolArray:
        """Which keys fall in a first-level bucket some target still looks into (only they can matter)."""
        wanted: BoolArray = self._wanted0[self._bucket(keys, self.lo0, self.width0)]
        return wanted

    def match(self, groups: IntArray, keys: IntArray) -> None:
        """One batch of an exact-rank pass."""
        # Only values in a first-level bucket some group still looks into can matter: a cheap first cut.
        near = self.near(keys)
        groups, keys = groups[near], keys[near]
        for s in range(self.slots):
            t = groups * self.slots + s
            mode = self.mode[t]
            inside = (mode != 0) & (keys.view(np.uint64) - self.lo[t].view(np.uint64) < self.width[t])
            take = inside & (mode == 1)
            if take.any():
                self._collected.append((t[take], keys[take]))
            split = inside & (mode == 2)
            if split.any():
                ts = t[split]
                sub = self._bucket(keys[split], self.lo[ts], self.sub_width[ts])
                self._sub += np.bincount(self.refine_id[ts] * self.nb + sub, minlength=len(self._sub))

    def settle(self) -> None:
        """End of an exact-rank pass: read the collected ranks, narrow the split buckets."""
        if self._collected:
            tids = np.concatenate([c[0] for c in self._collected])
            keys = np.concatenate([c[1] for c in self._collected])
            order = np.lexsort((keys, tids))
            tids, keys = tids[order], keys[order]
            for t in np.flatnonzero(self.mode == 1):
                first = int(np.searchsorted(tids, t, side="left"))
                self.value[t] = keys_to_values(keys[first + int(self.rank[t]):][:1])[0]
                self.mode[t] = 0
        self.mode[self.mode == 1] = 0
        sub = self._sub.reshape(-1, self.nb) if len(self._sub) else self._sub.reshape(0, self.nb)
        for t in np.flatnonzero(self.mode == 2):
            row = np.cumsum(sub[self.refine_id[t]])
            b = int(np.searchsorted(row, self.rank[t], side="right"))
            before = int(row[b - 1]) if b else 0
            self.rank[t] -= before
            self.count[t] = int(row[b] - before)
            end = int(self.lo[t]) + int(self.width[t])  # the last sub-bucket stops at the bucket's end
            self.lo[t] = int(self.lo[t]) + b * int(self.sub_width[t])
            self.width[t] = min(int(self.sub_width[t]), end - int(self.lo[t]))
            self.mode[t] = 1
        self._plan()

    def result(self, group: int, slot: int) -> float | None:
        value = self.value[group * self.slots + slot]
        return None if np.isnan(value) else float(value)


@dataclass
class _Batch:
    """The columns of one row group the passes need, with each request's counting instant."""

    pos0: int
    start: IntArray
    latency: FloatArray
    ok: BoolArray
    instant: IntArray
    error: IntArray  # dictionary index into ``classes``
    classes: list[str]
    moved: int


def _ok_and_errors(table: pa.Table) -> tuple[BoolArray, IntArray, list[str]]:
    outcome = table.column("outcome").combine_chunks()
    error = table.column("error_class").combine_chunks() if "error_class" in table.column_names else None
    if isinstance(outcome, pa.DictionaryArray):
        lut = np.array([v == "ok" for v in outcome.dictionary.to_pylist()] + [False], dtype=bool)
        ok = lut[outcome.indices.to_numpy(zero_copy_only=False)]
    else:
        ok = np.asarray(outcome.to_numpy(zero_copy_only=False) == "ok", dtype=bool)
    if error is None:
        return ok, np.zeros(0, dtype=np.int64), []
    if not isinstance(error, pa.DictionaryArray):
        error = error.dictionary_encode()
    return (ok, error.indices.to_numpy(zero_copy_only=False).astype(np.int64),
            [str(v) for v in error.dictionary.to_pylist()])


def _batch(g: RowGroupStats, table: pa.Table, t0: int | None) -> _Batch:
    start = table.column("start_ns").to_numpy().astype(np.int64, copy=False)
    latency = table.column("latency_s").to_numpy().astype(np.float64, copy=False)
    ok, error, classes = _ok_and_errors(table)
    instant, moved = start, 0
    if t0 is not None:  # the rule of ``effective_starts``, on the few failed requests started before t0
        rows = np.flatnonzero((start < t0) & ~ok)
        end = start[rows] + np.rint(latency[rows] * 1e9).astype(np.int64)
        late = rows[end >= t0]
        moved = len(late)
        if moved:
            instant = start.copy()
            instant[late] = end[end >= t0]
    return _Batch(g.offset, start, latency, ok, instant, error, classes, moved)


def _nearest_first(store: CompactTimeline, groups: list[RowGroupStats], t0: int | None,
                   lo_key: tuple[int, int, int], obs_end: int, limit: float) -> int | None:
    """The counting instant of the first good request after ``lo_key`` (instant, start, row) in timeline
    order that counts before ``obs_end``: row groups in order of their first start, stopping once no later
    group can hold an earlier one."""
    best: int | None = None
    li, ls, lp = lo_key
    for g in sorted(groups, key=lambda x: x.start_min):
        if best is not None and g.start_min > best:
            break
        b = _batch(g, store.read(g, ["start_ns", "latency_s", "outcome"]), t0)
        pos = b.pos0 + np.arange(len(b.start), dtype=np.int64)
        after = (b.instant > li) | ((b.instant == li) & ((b.start > ls) | ((b.start == ls) & (pos > lp))))
        good = b.ok & (b.latency <= limit) & (b.instant < obs_end) & after
        if good.any():
            found = int(b.instant[good].min())
            best = found if best is None else min(best, found)
    return best


def figures_streamed(store: CompactTimeline | None, q: TimelineQuestion, settings: AnalysisSettings, *,
                     buckets: int = 2048, collect_limit: int = 4_000_000) -> TimelineFigures:
    """Every figure of ``figures_in_memory``, from batched scans of the compacted timeline.

    ``buckets`` and ``collect_limit`` size the percentile passes (``ExactQuantiles``); tests shrink them
    to drive the rare paths (buckets split again) on small timelines."""
    notes: list[str] = []
    groups = store.groups if store is not None else []
    first = min((g.start_min for g in groups), default=None)
    last = max((g.start_max for g in groups), default=None)
    span_start, span_end = span_of(q, first, last)
    outside, first_inside = 0, None
    for g in groups:  # statistics decide, except for the row groups across a span end
        if g.start_min >= span_start and g.start_max < span_end:
            first_inside = g.start_min if first_inside is None else min(first_inside, g.start_min)
        elif g.start_max < span_start or g.start_min >= span_end:
            outside += g.rows
        else:
            assert store is not None
            s = store.read(g, ["start_ns"]).column("start_ns").to_numpy()
            inside = (s >= span_start) & (s < span_end)
            outside += int(len(s) - np.count_nonzero(inside))
            if inside.any():
                low = int(s[inside].min())
                first_inside = low if first_inside is None else min(first_inside, low)
    span_start, obs_end, t0 = bound_span(q, (span_start, span_end), outside, first_inside, settings, notes)
    anchor = t0 if t0 is not None else span_start
    bounds = _boundaries(anchor, span_start, span_end, settings.window_ns, [obs_end])
    nwin = max(0, len(bounds) - 1)
    limit = settings.objective.p99_latency_s
    phases = phases_of(span_start, obs_end, t0, q.fault_end_ns)
    per_bin = max(1, -(-nwin // _SERIES_POINTS))
    nbins = -(-nwin // per_bin)
    lat_lo = min((g.latency_min for g in groups), default=0.0)
    lat_hi = max((g.latency_max for g in groups), default=0.0)
    keys_range = order_keys(np.array([lat_lo, lat_hi], dtype=np.float64))
    quant = ExactQuantiles([(50.0, 95.0, 99.0)] * 3 + [(50.0, 99.0)] * nbins,
                           int(keys_range[0]), int(keys_range[1]) + 1, buckets, collect_limit)

    requests = np.zeros(nwin, dtype=np.int64)
    failed_w = np.zeros(nwin, dtype=np.int64)
    slow_w = np.zeros(nwin, dtype=np.int64)
    phase_requests = np.zeros(3, dtype=np.int64)
    errors: dict[str, int] = {}
    errors_after: dict[str, int] = {}
    total = failed = moved = 0

    grid_first = -((anchor - span_start) // settings.window_ns)  # the first grid point >= span start
    off_grid = [int(c) for c in bounds if (int(c) - anchor) % settings.window_ns]

    def window_of(inst: IntArray) -> IntArray:
        """``searchsorted(bounds, inst, "right") - 1`` for instants in the span, by arithmetic: grid
        points at or before the instant, plus the cuts off the grid at or before it."""
        win = (inst - anchor) // settings.window_ns - grid_first
        for c in off_grid:
            win += inst >= c
        return win

    # Each phase is [a, b), judged on its own: when the fault outlasts the observation, "during" ends after
    # "after" would begin (which is then empty), so the bounds are not one sorted list of edges.
    phase_bounds = [(a, b) for a, b in phases.values()]

    def phase_of(inst: IntArray) -> IntArray:
        phase = np.full(len(inst), -1, dtype=np.int64)
        for p, (a, b) in enumerate(phase_bounds):
            if b > a:
                phase[(inst >= a) & (inst < b)] = p
        return phase

    def ok_groups(b: _Batch, phase: IntArray | None = None, win: IntArray | None = None
                  ) -> list[tuple[IntArray, IntArray]]:
        """(group, key) of each ok request in a phase, and of each in a plot bin (two calls: each keeps
        its histogram update to the groups the batch touches). ``phase`` and ``win`` (of every request,
        -1 outside) when the caller has them; without them (the exact-rank passes) only the requests
        near a wanted rank are placed."""
        if phase is None or win is None:
            rows = np.flatnonzero(b.ok)
            keys = order_keys(b.latency[rows])
            near = quant.near(keys)
            rows, keys = rows[near], keys[near]
            phase, win = phase_and_window(b.start[rows])  # an ok request counts at its start
        else:
            keys = order_keys(b.latency[b.ok])
            phase, win = phase[b.ok], win[b.ok]
        in_phase = (phase >= 0) & (phase < 3)
        inside = win >= 0
        return [(phase[in_phase], keys[in_phase]), (3 + win[inside] // per_bin, keys[inside])]

    def phase_and_window(inst: IntArray) -> tuple[IntArray, IntArray]:
        phase = phase_of(inst)
        win = window_of(inst)
        win[(inst < span_start) | (inst >= span_end)] = -1
        return phase, win

    for g, table in (store.scan(["start_ns", "latency_s", "outcome", "error_class"]) if store else []):
        b = _batch(g, table, t0)
        moved += b.moved
        phase, win_all = phase_and_window(b.instant)
        valid = win_all >= 0
        win = win_all[valid]
        requests += np.bincount(win, minlength=nwin)
        failed_w += np.bincount(win[~b.ok[valid]], minlength=nwin)
        slow_w += np.bincount(win[b.latency[valid] > limit], minlength=nwin)
        in_span = (b.instant >= span_start) & (b.instant < obs_end)
        bad = in_span & ~b.ok
        total += int(np.count_nonzero(in_span))
        failed += int(np.count_nonzero(bad))
        for i, c in enumerate(np.bincount(b.error[bad], minlength=len(b.classes)).tolist()):
            if c:
                name = b.classes[i] or "unclassified"
                errors[name] = errors.get(name, 0) + c
        if t0 is not None:
            bad_after = bad & (b.instant >= t0)
            for i, c in enumerate(np.bincount(b.error[bad_after], minlength=len(b.classes)).tolist()):
                if c:
                    name = b.classes[i] or "unclassified"
                    errors_after[name] = errors_after.get(name, 0) + c
        phase_requests += np.bincount(phase[(phase >= 0) & (phase < 3)], minlength=3)
        for gids, keys in ok_groups(b, phase, win_all):
            quant.add(gids, keys)
    if moved:
        notes.append(moved_note(moved))

    # Windows: make_windows' judgement on the counts.
    starts_w, ends_w = bounds[:-1], bounds[1:]
    allowed_slow = requests - (99 * requests + 99) // 100
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(requests > 0, (requests - failed_w) / np.maximum(requests, 1), 0.0)
    sliver = (requests == 0) & ((ends_w - starts_w) < settings.window_ns)
    good = sliver | ((requests > 0) & (ratio >= settings.objective.success_ratio) & (slow_w <= allowed_slow))
    dur = ends_w - starts_w
    observed = ends_w <= obs_end
    span_ns = int(dur[observed].sum())
    availability_time = float(dur[observed & good].sum() / span_ns) if span_ns else None

    # Impact and recovery need the first and last bad windows after t0 (``recovery``'s rules).
    first_bad = last_bad = None
    bad_ns = 0
    if t0 is not None:
        idx = np.flatnonzero((starts_w >= t0) & (ends_w <= obs_end))
        bad_idx = idx[~good[idx]]
        bad_ns = int(dur[bad_idx].sum())
        if len(bad_idx):
            first_bad, last_bad = int(bad_idx[0]), int(bad_idx[-1])
    impact: int | None = None
    last_key: tuple[int, int, int] | None = None
    look_first = first_bad is not None and requests[first_bad] > 0
    look_last = last_bad is not None and requests[last_bad] > 0
    near_first = set(g.index for g in store.overlapping(int(starts_w[first_bad]), int(ends_w[first_bad]))) \
        if look_first and store and first_bad is not None else set()
    near_last = set(g.index for g in store.overlapping(int(starts_w[last_bad]), int(ends_w[last_bad]))) \
        if look_last and store and last_bad is not None else set()

    quant.start()
    passes = 0
    while store is not None and (quant.pending or (passes == 0 and (near_first or near_last))):
        wanted = store.groups if quant.pending else [g for g in store.groups if g.index in near_first | near_last]
        for g, table in store.scan(["start_ns", "latency_s", "outcome"], wanted):
            b = _batch(g, table, t0)
            if quant.pending:
                for gids, keys in ok_groups(b):
                    quant.match(gids, keys)
            if passes or g.index not in near_first | near_last:
                continue
            offending = ~b.ok | (b.latency > limit)
            if g.index in near_first and first_bad is not None:
                m = offending & (b.instant >= starts_w[first_bad]) & (b.instant < ends_w[first_bad])
                if m.any():
                    found = int(b.instant[m].min())
                    impact = found if impact is None else min(impact, found)
            if g.index in near_last and last_bad is not None:
                m = offending & (b.instant >= starts_w[last_bad]) & (b.instant < ends_w[last_bad])
                if m.any():
                    rows = np.flatnonzero(m)
                    keys = np.lexsort((rows, b.start[rows], b.instant[rows]))  # the last is the largest
                    r = int(rows[keys[-1]])
                    cand = (int(b.instant[r]), int(b.start[r]), b.pos0 + r)
                    last_key = cand if last_key is None or cand > last_key else last_key
        if quant.pending or passes == 0:
            quant.settle()
        passes += 1

    rec: Recovery | None = None
    if t0 is not None:
        fault_end = q.fault_end_ns if q.fault_end_ns is not None else t0
        observed_after = max(0, obs_end - t0)
        after_fault_end = max(0, obs_end - max(t0, fault_end))
        if first_bad is None or last_bad is None:
            enough = obs_end - max(t0, fault_end) >= settings.stability_ns
            state: RecoveryState = "no-impact" if enough else "inconclusive"
            rec = Recovery(state, None, None, 0, None, None, observed_after, after_fault_end)
        else:
            impact_ns = impact if look_first and impact is not None else int(starts_w[first_bad])
            recovery_ns = int(ends_w[last_bad])
            if look_last and last_key is not None and store is not None:
                later = [g for g in store.groups if g.instant_max >= last_key[0] and g.start_min < obs_end]
                first_good = _nearest_first(store, later, t0, last_key, obs_end, limit)
                if first_good is not None:
                    recovery_ns = first_good
            stable_ns = obs_end - int(ends_w[last_bad])
            state = "recovered" if stable_ns >= settings.stability_ns else "censored"
            rec = Recovery(state, impact_ns, recovery_ns, bad_ns, first_bad, last_bad, observed_after,
                           after_fault_end)

    latency: dict[str, dict[str, float | int | None]] = {}
    for p, name in enumerate(phases):
        n_ok = int(quant.totals[p]) if len(quant.totals) else 0
        entry: dict[str, float | int | None] = {"requests": int(phase_requests[p]), "ok": n_ok}
        for s, pct in enumerate((50, 95, 99)):
            entry[f"p{pct}_s"] = quant.result(p, s) if n_ok else None
        latency[name] = entry
    return TimelineFigures(
        span=(span_start, span_end), obs_end=obs_end, t0_ns=t0, total=total, failed=failed,
        availability_time=availability_time, observed_ns=span_ns, errors_by_class=errors,
        errors_after_fault_by_class=errors_after, recovery=rec, latency=latency,
        series=_series(bounds, requests, failed_w, good, per_bin, quant), notes=notes)


def _series(bounds: IntArray, requests: IntArray, failed: IntArray, good: BoolArray, per_bin: int,
            quant: ExactQuantiles) -> dict[str, FloatArray]:
    """``window_series`` from the window counts and the plot bins' exact percentiles."""
    n = max(0, len(bounds) - 1)
    if n == 0:
        z = np.zeros(0)
        return {"t_ns": z, "end_ns": z, "throughput": z, "error_ratio": z, "p50_s": z, "p99_s": z, "good": z}
    starts = np.arange(0, n, per_bin)
    ends = np.minimum(starts + per_bin, n)
    t0, t1 = bounds[:-1][starts], bounds[1:][ends - 1]
    req = np.add.reduceat(requests, starts).astype(np.float64)
    fails = np.add.reduceat(failed, starts).astype(np.float64)
    dur = np.maximum((t1 - t0) / 1e9, 1e-9)
    p50 = np.full(len(starts), np.nan)
    p99 = np.full(len(starts), np.nan)
    for i in range(len(starts)):
        if quant.totals[3 + i]:
            p50[i] = quant.result(3 + i, 0)
            p99[i] = quant.result(3 + i, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.where(req > 0, fails / np.maximum(req, 1), np.nan)
    good_bins = np.minimum.reduceat(good.astype(np.float64), starts)
    return {"t_ns": t0.astype(np.float64), "end_ns": t1.astype(np.float64), "throughput": req / dur,
            "error_ratio": err, "p50_s": p50, "p99_s": p99, "good": good_bins}


def phase_counts(timeline_dir: Path, t0: int | None, t1: int | None) -> dict[str, dict[str, Any]]:
    """Requests and failures (by class) before ``t0``, from ``t0`` to ``t1`` and after ``t1``, each request
    at the instant the analysis counts it; one streamed pass over the compacted timeline (compacted here if
    the load's chunks are still loose). Empty when there is no timeline."""
    path = compact(timeline_dir) if timeline_dir.is_dir() else None
    if path is None:
        return {}
    store = CompactTimeline(path)
    if not store.rows:
        return {}
    out: dict[str, dict[str, Any]] = {n: {"requests": 0, "failed": 0, "by_class": {}}
                                      for n in ("before", "during", "after")}
    for g, table in store.scan(["start_ns", "latency_s", "outcome", "error_class"]):
        b = _batch(g, table, t0)
        masks = {"before": b.instant < (t0 if t0 is not None else 2**62),
                 "during": (b.instant >= (t0 if t0 is not None else 2**62)) & (b.instant <= (t1 or 0)),
                 "after": b.instant > (t1 if t1 is not None else 2**62)}
        for name, mask in masks.items():
            bad = mask & ~b.ok
            entry = out[name]
            entry["requests"] += int(np.count_nonzero(mask))
            entry["failed"] += int(np.count_nonzero(bad))
            for i, c in enumerate(np.bincount(b.error[bad], minlength=len(b.classes)).tolist()):
                if c:
                    entry["by_class"][b.classes[i]] = entry["by_class"].get(b.classes[i], 0) + c
    return out
