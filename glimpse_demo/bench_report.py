"""Bench output: the result JSON, the plotly figure (HTML, PNG when kaleido is installed) and the
markdown table. Reads a result dict only; measures nothing."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)


def write_json(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=json_default))
    tmp.replace(path)


def json_default(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def figure(result: dict):
    """Prefill time vs visual tokens, measured vs analytic ratio vs kept fraction, decode ms/token
    vs context, KV MB, peak memory."""
    from plotly.subplots import make_subplots

    sizes = result["sizes"]
    fig = make_subplots(
        rows=2, cols=3,
        subplot_titles=(
            "LLM prefill time vs visual tokens", "prefill ratio glimpse/baseline vs kept fraction",
            "decode ms/token vs context", "KV cache after prefill (MiB)", "peak memory growth (MiB)",
            "7B release, analytic (kept 7.4%)",
        ),
    )
    names = [m["mode"] for m in sizes[0]["modes"]]
    xs = [s["n_visual"] for s in sizes]
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
    color = {name: palette[i % len(palette)] for i, name in enumerate(names)}
    size_color = {s["n_visual"]: palette[(len(names) + i) % len(palette)] for i, s in enumerate(sizes)}
    cpu = result["config"].get("clock") == "cpu"
    pre, dec = ("cpu_prefill_s", "cpu_decode_ms_per_token") if cpu else ("prefill_s", "decode_ms_per_token")
    for i, name in enumerate(names):
        ms = [s["modes"][i] for s in sizes]
        style = {"name": name, "legendgroup": name, "marker": {"color": color[name]}, "line": {"color": color[name]}}
        fig.add_scatter(x=xs, y=[m[pre] for m in ms], mode="lines+markers", row=1, col=1, **style)
        fig.add_scatter(x=[m["kv_tokens_after_prefill"] for m in ms], y=[m[dec] for m in ms], showlegend=False,
                        mode="markers", row=1, col=3, **style)
        fig.add_scatter(x=xs, y=[m["kv_bytes_after_prefill"] / 2**20 for m in ms], showlegend=False,
                        mode="lines+markers", row=2, col=1, **style)
        fig.add_scatter(x=xs, y=[m["peak_bytes"] / 2**20 for m in ms], showlegend=False, mode="lines+markers",
                        row=2, col=2, **style)
    for s in sizes:
        c = sorted(s["comparisons"], key=lambda c: c["kept_fraction"])
        kf = [x["kept_fraction"] for x in c]
        col = size_color[s["n_visual"]]
        fig.add_scatter(x=kf, y=[x["prefill_ratio_measured"] for x in c], name=f"measured, {s['n_visual']} tok",
                        mode="markers", marker={"color": col, "size": 9}, row=1, col=2)
        fig.add_scatter(x=kf, y=[x["prefill_ratio_analytic_flops"] for x in c], name=f"analytic FLOPs, {s['n_visual']} tok",
                        mode="lines", line={"dash": "dot", "color": col}, row=1, col=2)
    rel = result.get("analytic_releases", {}).get("7b")
    if rel:
        pts = [p for p in rel["settings"] if abs(p["kept_fraction"] - 0.074) < 0.002]
        for key, label in (("prefill_flops_ratio", "prefill FLOPs"), ("kv_ratio", "KV bytes"), ("decode_bytes_ratio", "decode bytes")):
            fig.add_bar(x=[str(p["n_visual"]) for p in pts], y=[p[key] for p in pts], name=f"7B {label} ratio", row=2, col=3)
    fig.update_xaxes(type="log", title_text="visual tokens", row=1, col=1)
    fig.update_yaxes(type="log", title_text="CPU s" if cpu else "s", row=1, col=1)
    fig.update_xaxes(title_text="kept fraction", row=1, col=2)
    fig.update_xaxes(title_text="tokens in KV cache", row=1, col=3)
    fig.update_xaxes(title_text="visual tokens", row=2, col=1)
    fig.update_xaxes(title_text="visual tokens", row=2, col=2)
    fig.update_xaxes(title_text="visual tokens", row=2, col=3)
    env = result["environment"]
    fig.update_layout(
        title=f"glimpse-demo bench: {result['model']['arch']} on {env['device']} ({env['torch_threads']} threads), "
        f"medians of {result['config']['repeats']}, {'CPU' if cpu else 'wall'} time",
        height=800, width=1400,
    )
    return fig


def write_outputs(result: dict, out_dir: Path, stem: str, html_js: str = "cdn", png: bool = True) -> dict:
    """``stem``.json, ``stem``.html and, when kaleido is installed and ``png``, ``stem``.png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": str(out_dir / f"{stem}.json")}
    write_json(result, out_dir / f"{stem}.json")
    try:
        fig = figure(result)
    except ImportError:
        log.warning("plotly is not installed: no figure")
        return paths
    fig.write_html(str(out_dir / f"{stem}.html"), include_plotlyjs=html_js)
    paths["html"] = str(out_dir / f"{stem}.html")
    if not png:
        return paths
    try:
        import kaleido  # noqa: F401

        fig.write_image(str(out_dir / f"{stem}.png"), scale=1)
        paths["png"] = str(out_dir / f"{stem}.png")
    except Exception as e:  # kaleido absent or without a browser: HTML only
        log.info("no PNG: %s", e)
    return paths


def markdown_table(result: dict) -> str:
    """The README table: one row per (visual tokens, mode); times are medians."""
    cpu = result["config"].get("clock") == "cpu"
    lines = [
        "| visual tokens | mode | kept | prefill CPU ms | prefill wall ms | ratio | analytic FLOPs ratio | KV MiB | decode ms/tok | peak MiB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in result["sizes"]:
        comps = {c["mode"]: c for c in s["comparisons"]}
        for m in s["modes"]:
            c = comps.get(m["mode"])
            ratio = f"{c['prefill_ratio_measured']:.3f}" if c else "1"
            ana = f"{c['prefill_ratio_analytic_flops']:.3f}" if c else "1"
            dec = m["cpu_decode_ms_per_token"] if cpu else m["decode_ms_per_token"]
            lines.append(
                f"| {s['n_visual']} | {m['mode']} | {m['kept_fraction']:.3f} | {m['cpu_prefill_s'] * 1e3:.0f} | "
                f"{m['prefill_s'] * 1e3:.0f} | {ratio} | {ana} | {m['kv_bytes_after_prefill'] / 2**20:.2f} | {dec:.1f} | "
                f"{m['peak_bytes'] / 2**20:.0f} |"
            )
    return "\n".join(lines)


# ----- command line --------------------------------------------------------------------------------
