"""Timeline plots rendered to inline SVG (matplotlib's object API: no pyplot, no global state).

One figure per repetition: throughput, error ratio, p50/p99 latency of ok requests, and a lane per
replica, all against seconds since the fault start, with the fault window shaded and the impact,
recovery and capacity-recovery instants marked.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from harness.analysis import RepetitionResult
from harness.report._serving import NOT_SERVING_COLOUR, mark_not_serving

__all__ = ["LANE_COLOURS", "gpu_svg", "repetition_svg", "trend_svg"]

LANE_COLOURS = {"ready": "#4caf50", "not-ready": "#ff9800", "restarting": "#e53935", "stopped": "#9e9e9e"}


def _svg_text(fig: Any) -> str:  # a matplotlib Figure (matplotlib is imported lazily, untyped here)
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "harness", "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buf.getvalue()
    # Inline SVG needs neither the XML prolog nor the RDF metadata block.
    return re.sub(r"<metadata>.*?</metadata>\s*", "", text[text.index("<svg"):], flags=re.DOTALL)


def repetition_svg(r: RepetitionResult, title: str, notes: Sequence[tuple[int, str]] = ()) -> str:
    """The repetition's timeline plot; ``notes`` (wall-clock ns, text) are marked where they were taken."""
    from matplotlib.figure import Figure

    origin = r.t0_ns if r.t0_ns is not None else r.span[0]
    s = r.series
    x = (s["t_ns"] - origin) / 1e9
    x_end = (s["end_ns"] - origin) / 1e9
    replicas = list(dict.fromkeys(i.replica for i in r.lanes))
    fig = Figure(figsize=(10, 6.8 + 0.25 * len(replicas)))
    ratios = [1.0, 0.8, 1.0, 0.25 + 0.18 * max(1, len(replicas))]
    axes = fig.subplots(4, 1, sharex=True, gridspec_kw={"height_ratios": ratios})
    step = {"where": "post"}
    xs = np.append(x, x_end[-1:]) if len(x) else x

    def stepped(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.append(values, values[-1:]) if len(values) else values

    axes[0].step(xs, stepped(s["throughput"]), color="#1565c0", lw=1, **step)
    axes[0].set_ylabel("requests/s")
    axes[1].step(xs, stepped(s["error_ratio"] * 100), color="#c62828", lw=1, **step)
    axes[1].set_ylabel("errors %")
    axes[1].set_ylim(bottom=0)
    axes[2].step(xs, stepped(s["p50_s"] * 1000), color="#2e7d32", lw=1, label="p50", **step)
    axes[2].step(xs, stepped(s["p99_s"] * 1000), color="#6a1b9a", lw=1, label="p99", **step)
    if np.isfinite(s["p99_s"]).any() and np.nanmin(s["p50_s"]) > 0:
        axes[2].set_yscale("log")
    axes[2].set_ylabel("latency ms (ok)")
    axes[2].legend(loc="upper right", fontsize=7)
    lanes_ax = axes[3]
    for row, name in enumerate(replicas):
        for colour_state, colour in LANE_COLOURS.items():
            bars = [((i.start_ns - origin) / 1e9, (i.end_ns - i.start_ns) / 1e9)
                    for i in r.lanes if i.replica == name and i.state == colour_state]
            if bars:
                lanes_ax.broken_barh(bars, (row - 0.4, 0.8), facecolors=colour)
    mark_not_serving(lanes_ax, r, replicas, origin)
    lanes_ax.set_yticks(range(len(replicas)), labels=replicas, fontsize=7)
    lanes_ax.set_ylim(-0.6, max(len(replicas), 1) - 0.4)
    lanes_ax.set_xlabel("seconds since fault start" if r.t0_ns is not None else "seconds since load start")
    if not replicas:
        lanes_ax.text(0.5, 0.5, "no platform events", transform=lanes_ax.transAxes, ha="center", va="center")
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=k) for k, c in LANE_COLOURS.items()]
    if r.readiness is not None and r.readiness.replicas:
        handles.append(Patch(facecolor="none", edgecolor=NOT_SERVING_COLOUR, hatch="////",
                             label="ready, not serving"))
    lanes_ax.legend(handles=handles, loc="upper right", fontsize=6, ncol=5)
    if r.t0_ns is not None:
        end = r.info.fault_end_ns if r.info.fault_end_ns is not None else r.t0_ns
        for ax in axes:
            ax.axvspan(0, max((end - origin) / 1e9, 0.05), color="#ffcc80", alpha=0.35, lw=0,
                       label="fault" if ax is axes[0] else None)
            if r.impact_ns is not None:
                ax.axvline((r.impact_ns - origin) / 1e9, color="#d32f2f", ls="--", lw=1,
                           label=f"impact +{r.time_to_impact_s:.3f} s" if ax is axes[0] else None)
            if r.recovery_ns is not None and r.recovered:
                ax.axvline((r.recovery_ns - origin) / 1e9, color="#2e7d32", ls="--", lw=1,
                           label=f"recovered +{r.time_to_recover_s:.3f} s" if ax is axes[0] else None)
            if r.capacity is not None and r.capacity.recovered and r.capacity.instant_ns is not None:
                ax.axvline((r.capacity.instant_ns - origin) / 1e9, color="#1565c0", ls=":", lw=1,
                           label=f"capacity +{r.capacity.seconds:.3f} s" if ax is axes[0] else None)
        if r.state == "inconclusive":
            axes[0].text(0.99, 0.05, "INCONCLUSIVE (too little observed after the fault ended)",
                         transform=axes[0].transAxes, ha="right", color="#8a5a00", fontsize=9)
        elif not r.recovered:
            axes[0].text(0.99, 0.05, f"NOT RECOVERED (TTR {r.ttr_display()})", transform=axes[0].transAxes,
                         ha="right", color="#d32f2f", fontsize=9)
        axes[0].legend(loc="lower left", fontsize=7, ncol=4)
    for i, (ts_ns, _text) in enumerate(n for n in notes if r.span[0] <= n[0] <= r.span[1]):
        x_note = (ts_ns - origin) / 1e9
        for ax in axes:
            ax.axvline(x_note, color="#455a64", ls=":", lw=1)
        axes[0].annotate(f"note {i + 1}", (x_note, 1.0), xycoords=("data", "axes fraction"), fontsize=7,
                         color="#455a64", rotation=90, va="top", ha="right")
    axes[0].set_title(title, fontsize=10)
    for ax in axes[:3]:
        ax.grid(alpha=0.3)
    return _svg_text(fig)


def gpu_svg(r: RepetitionResult, series: dict[str, dict[str, list[list[float]]]], title: str) -> str:
    """GPU memory used and utilisation per GPU on the timeline's time axis (seconds since the fault start)."""
    from matplotlib.figure import Figure

    origin_s = (r.t0_ns if r.t0_ns is not None else r.span[0]) / 1e9
    fig = Figure(figsize=(10, 3.2))
    axes = fig.subplots(2, 1, sharex=True)
    for ax, key, scale, label in ((axes[0], "memory_used_bytes", 2**-30, "GPU memory used GiB"),
                                  (axes[1], "utilization", 100.0, "GPU utilisation %")):
        for uuid, points in sorted(series.get(key, {}).items()):
            if points:
                ax.step([t - origin_s for t, _ in points], [v * scale for _, v in points], where="post", lw=1,
                        label=uuid[:12])
        ax.set_ylabel(label, fontsize=8)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if r.t0_ns is not None:
            end = r.info.fault_end_ns if r.info.fault_end_ns is not None else r.t0_ns
            ax.axvspan(0, max((end - r.t0_ns) / 1e9, 0.05), color="#ffcc80", alpha=0.35, lw=0)
    axes[0].legend(loc="upper right", fontsize=6)
    axes[1].set_xlabel("seconds since fault start" if r.t0_ns is not None else "seconds since load start")
    axes[0].set_title(title, fontsize=10)
    return _svg_text(fig)


def trend_svg(
    title: str, labels: Sequence[str], values: Sequence[float | None], censored: Sequence[bool],
    statuses: Sequence[str], unit: str,
) -> str:
    """p95 of one figure over runs; censored values (lower bounds) and runs that did not complete are
    drawn apart, so neither can pass for a measured, completed result."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.2))
    ax = fig.subplots()
    x = np.arange(len(labels))
    y = np.array([np.nan if v is None else v for v in values], dtype=float)
    cens = np.array(censored, dtype=bool)
    done = np.array([s == "completed" for s in statuses], dtype=bool)
    ax.plot(x, np.where(cens, np.nan, y), lw=1, color="#1565c0")
    measured = ~cens & done
    if measured.any():
        ax.plot(x[measured], y[measured], "o", color="#1565c0", label="p95")
    if cens.any():
        ax.plot(x[cens], y[cens], "^", color="#d32f2f", label="censored: more than this (not recovered)")
    if (~done & ~cens).any():
        ax.plot(x[~done & ~cens], y[~done & ~cens], "s", mfc="none", color="#757575",
                label="run did not complete")
    names = [re.sub(r"-.*", "", lab) + ("" if s == "completed" else f" ({s})") for lab, s in zip(
        labels, statuses, strict=True)]
    ax.set_xticks(x, labels=names, rotation=30, fontsize=7, ha="right")
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _svg_text(fig)
