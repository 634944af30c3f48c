"""Plotly figures of a run: timings and memory of both modes, and the VIP probability histogram.

Pure functions of :class:`RunResult` values; no UI framework here.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .result import RunResult

MODE_NAMES = {"glimpse": "GlimpsePrune", "baseline": "baseline"}
MODE_COLORS = {"glimpse": "#e8590c", "baseline": "#5c7cfa"}
KEPT_COLOR = "#e8590c"
DROPPED_COLOR = "#868e96"
MIB = 2**20


def _layout(fig: go.Figure, title: str, height: int) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01, "font": {"size": 14}},
        height=height,
        margin={"l": 40, "r": 16, "t": 64, "b": 36},
        legend={"orientation": "h", "y": -0.15},
        template="plotly_white",
    )
    return fig


def metrics_figure(runs: list[RunResult]) -> go.Figure:
    """Grouped bars, one colour per run: time (ms), memory (MiB), decode speed (tokens/s)."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=("time (ms)", "memory (MiB)", "decode (tokens/s)"),
                        column_widths=[0.5, 0.32, 0.18])
    for r in runs:
        t, m = r.timings, r.memory
        name, color = MODE_NAMES.get(r.mode, r.mode), MODE_COLORS.get(r.mode)
        common = {"name": name, "marker_color": color, "legendgroup": r.mode}
        times = {"vision": t.vision_s, "prefill": t.prefill_s, "first token": t.ttft_s, "total": t.total_s}
        fig.add_trace(go.Bar(x=list(times), y=[v * 1e3 for v in times.values()], **common), row=1, col=1)
        mem = {"KV after prefill": m.kv_bytes_after_prefill, "KV at end": m.kv_bytes_end, "peak": m.peak_bytes}
        fig.add_trace(go.Bar(x=list(mem), y=[v / MIB for v in mem.values()], showlegend=False, **common), row=1, col=2)
        fig.add_trace(go.Bar(x=["decode"], y=[t.decode_tokens_per_s], showlegend=False, **common), row=1, col=3)
    fig.update_layout(barmode="group")
    return _layout(fig, "Both runs, side by side", 340)


def probability_histogram(probs: np.ndarray, keep: np.ndarray, threshold: float, bins: int = 20) -> go.Figure:
    """Histogram of VIP keep probabilities, kept and dropped tokens stacked, the threshold drawn.

    ``probs`` and ``keep`` hold every image token of the prompt (flattened, same order).
    """
    p = np.asarray(probs, dtype=np.float64).ravel()
    k = np.asarray(keep, dtype=bool).ravel()
    if p.shape != k.shape:
        raise ValueError(f"{p.size} probabilities but {k.size} mask entries")
    xbins = {"start": 0.0, "end": 1.0, "size": 1.0 / bins}
    fig = go.Figure()
    fig.add_trace(go.Histogram(x=p[k], xbins=xbins, name=f"kept ({int(k.sum())})", marker_color=KEPT_COLOR))
    fig.add_trace(go.Histogram(x=p[~k], xbins=xbins, name=f"dropped ({int((~k).sum())})", marker_color=DROPPED_COLOR))
    fig.add_vline(x=threshold, line_width=2, line_dash="dash", line_color="#1c7ed6",
                  annotation_text=f"threshold {threshold:.3g}", annotation_position="top")
    fig.update_layout(barmode="stack", bargap=0.05)
    fig.update_xaxes(range=[0, 1], title_text="VIP keep probability")
    fig.update_yaxes(title_text="image tokens")
    return _layout(fig, f"VIP probabilities of {p.size} image tokens", 320)
